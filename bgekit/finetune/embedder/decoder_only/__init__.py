"""FlagEmbedding's ``finetune.embedder.decoder_only`` path; the runnable modules are below it."""
