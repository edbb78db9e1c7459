"""FlagEmbedding's ``finetune.embedder`` path; the runnable modules are below it."""
