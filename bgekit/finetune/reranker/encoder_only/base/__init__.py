"""``torchrun -m bgekit.finetune.reranker.encoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
