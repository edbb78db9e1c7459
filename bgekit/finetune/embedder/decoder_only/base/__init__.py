"""``torchrun -m bgekit.finetune.embedder.decoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""

from bgekit.finetune.classes import argument_classes, runner_class

DecoderOnlyEmbedderModelArguments, DecoderOnlyEmbedderDataArguments, DecoderOnlyEmbedderTrainingArguments = argument_classes(
    "embedder.decoder_only.base", ("DecoderOnlyEmbedderModelArguments", "DecoderOnlyEmbedderDataArguments", "DecoderOnlyEmbedderTrainingArguments"))
DecoderOnlyEmbedderRunner = runner_class("embedder.decoder_only.base", "DecoderOnlyEmbedderRunner")

__all__ = ["DecoderOnlyEmbedderModelArguments", "DecoderOnlyEmbedderDataArguments", "DecoderOnlyEmbedderTrainingArguments", "DecoderOnlyEmbedderRunner"]
