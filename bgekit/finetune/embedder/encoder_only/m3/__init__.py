"""``torchrun -m bgekit.finetune.embedder.encoder_only.m3``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
