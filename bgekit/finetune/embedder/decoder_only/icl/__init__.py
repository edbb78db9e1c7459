"""``torchrun -m bgekit.finetune.embedder.decoder_only.icl``: FlagEmbedding's fine-tuning module path, run by bgekit.train."""
