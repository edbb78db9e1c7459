"""FlagEmbedding's ``finetune.reranker`` path; the runnable modules are below it."""
