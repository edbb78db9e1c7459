"""``torchrun -m bgekit.finetune.embedder.decoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
