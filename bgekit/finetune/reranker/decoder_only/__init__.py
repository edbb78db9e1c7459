"""FlagEmbedding's ``finetune.reranker.decoder_only`` path; the runnable modules are below it."""
