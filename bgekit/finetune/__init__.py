"""FlagEmbedding's fine-tuning command lines on bgekit's trainer.

``torchrun --nproc_per_node N -m bgekit.finetune.embedder.encoder_only.base ARGS`` (and ``encoder_only.m3``,
``decoder_only.base``, ``decoder_only.icl``, ``reranker.encoder_only.base``, ``reranker.decoder_only.base``,
``reranker.decoder_only.layerwise``; ``python -m`` runs one process) take FlagEmbedding's options and defaults;
see :mod:`bgekit.finetune.cli` and docs/compat.md ("Command lines"). LoRA merge helpers of FlagEmbedding's
research code are in :mod:`bgekit.finetune.merge`, M3 data splitting in :mod:`bgekit.finetune.split_data`.
"""
