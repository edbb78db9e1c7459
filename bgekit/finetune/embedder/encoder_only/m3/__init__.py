"""``torchrun -m bgekit.finetune.embedder.encoder_only.m3``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""

from bgekit.finetune.classes import argument_classes, runner_class

EncoderOnlyEmbedderM3ModelArguments, EncoderOnlyEmbedderM3DataArguments, EncoderOnlyEmbedderM3TrainingArguments = argument_classes(
    "embedder.encoder_only.m3", ("EncoderOnlyEmbedderM3ModelArguments", "EncoderOnlyEmbedderM3DataArguments", "EncoderOnlyEmbedderM3TrainingArguments"))
EncoderOnlyEmbedderM3Runner = runner_class("embedder.encoder_only.m3", "EncoderOnlyEmbedderM3Runner")

__all__ = ["EncoderOnlyEmbedderM3ModelArguments", "EncoderOnlyEmbedderM3DataArguments", "EncoderOnlyEmbedderM3TrainingArguments", "EncoderOnlyEmbedderM3Runner"]
