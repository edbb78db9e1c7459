"""``torchrun -m bgekit.finetune.reranker.decoder_only.layerwise``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
