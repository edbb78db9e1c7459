"""``torchrun -m bgekit.finetune.embedder.encoder_only.base``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
