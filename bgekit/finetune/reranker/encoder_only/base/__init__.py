"""``torchrun -m bgekit.finetune.reranker.encoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""

from bgekit.finetune.classes import argument_classes, runner_class

RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments = argument_classes(
    "reranker.encoder_only.base", ("RerankerModelArguments", "RerankerDataArguments", "RerankerTrainingArguments"))
EncoderOnlyRerankerRunner = runner_class("reranker.encoder_only.base", "EncoderOnlyRerankerRunner")

__all__ = ["RerankerModelArguments", "RerankerDataArguments", "RerankerTrainingArguments", "EncoderOnlyRerankerRunner"]
