"""FlagEmbedding's ``finetune.reranker.encoder_only`` path; the runnable modules are below it."""
