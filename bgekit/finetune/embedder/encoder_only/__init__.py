"""FlagEmbedding's ``finetune.embedder.encoder_only`` path; the runnable modules are below it."""
