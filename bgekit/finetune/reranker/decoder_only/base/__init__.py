"""``torchrun -m bgekit.finetune.reranker.decoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""

from bgekit.finetune.classes import argument_classes, runner_class

RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments = argument_classes(
    "reranker.decoder_only.base", ("RerankerModelArguments", "RerankerDataArguments", "RerankerTrainingArguments"))
DecoderOnlyRerankerRunner = runner_class("reranker.decoder_only.base", "DecoderOnlyRerankerRunner")

__all__ = ["RerankerModelArguments", "RerankerDataArguments", "RerankerTrainingArguments", "DecoderOnlyRerankerRunner"]
