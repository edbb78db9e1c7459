"""``torchrun -m bgekit.finetune.embedder.decoder_only.icl``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""

from bgekit.finetune.classes import argument_classes, runner_class

DecoderOnlyEmbedderICLModelArguments, DecoderOnlyEmbedderICLDataArguments, DecoderOnlyEmbedderICLTrainingArguments = argument_classes(
    "embedder.decoder_only.icl", ("DecoderOnlyEmbedderICLModelArguments", "DecoderOnlyEmbedderICLDataArguments", "DecoderOnlyEmbedderICLTrainingArguments"))
DecoderOnlyEmbedderICLRunner = runner_class("embedder.decoder_only.icl", "DecoderOnlyEmbedderICLRunner")

__all__ = ["DecoderOnlyEmbedderICLModelArguments", "DecoderOnlyEmbedderICLDataArguments", "DecoderOnlyEmbedderICLTrainingArguments", "DecoderOnlyEmbedderICLRunner"]
