"""``torchrun -m bgekit.finetune.embedder.encoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""

from bgekit.finetune.classes import argument_classes, runner_class

EncoderOnlyEmbedderModelArguments, EncoderOnlyEmbedderDataArguments, EncoderOnlyEmbedderTrainingArguments = argument_classes(
    "embedder.encoder_only.base", ("EncoderOnlyEmbedderModelArguments", "EncoderOnlyEmbedderDataArguments", "EncoderOnlyEmbedderTrainingArguments"))
EncoderOnlyEmbedderRunner = runner_class("embedder.encoder_only.base", "EncoderOnlyEmbedderRunner")

__all__ = ["EncoderOnlyEmbedderModelArguments", "EncoderOnlyEmbedderDataArguments", "EncoderOnlyEmbedderTrainingArguments", "EncoderOnlyEmbedderRunner"]
