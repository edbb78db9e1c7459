"""``torchrun -m bgekit.finetune.reranker.decoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
