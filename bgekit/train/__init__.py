"""Fine-tuning on FlagEmbedding's jsonl training data, built on the Hugging Face Trainer.

Modules (shared by embedder and reranker training unless noted):

- :mod:`bgekit.train.data`: jsonl -> validated examples -> sources -> groups (query, positive, negatives);
- :mod:`bgekit.train.sampler`: the per-epoch batch sampler (mixed or same-source batches);
- :mod:`bgekit.train.losses`: contrastive / distillation / M3 / Matryoshka losses as functions of score
  matrices, and the gradient-carrying cross-process gather;
- :mod:`bgekit.train.trainer`: ``GroupTrainer``, the one Trainer subclass, with crash-safe saving and resume;
- :mod:`bgekit.train.lora`: LoRA configs and merged weights;
- embedders: :mod:`bgekit.train.collate` (batches), :mod:`bgekit.train.embedder` (the trainable model),
  :mod:`bgekit.train.args` (arguments, FlagEmbedding's names), :mod:`bgekit.train.run` (``train_embedder``);
- rerankers: :mod:`bgekit.train.reranker` (batches and the trainable cross-encoder / LLM / layerwise model),
  :mod:`bgekit.train.reranker_args`, :mod:`bgekit.train.run_reranker` (``train_reranker``);
- data preparation: :mod:`bgekit.train.mine` (hard negatives, ``bgekit mine``) and :mod:`bgekit.train.label`
  (teacher scores, ``bgekit label``).

Nothing here is imported by ``import bgekit``; it needs the ``train`` extra (accelerate, peft).

Example:
    >>> from bgekit.train.args import parse_embedder_args                    # doctest: +SKIP
    >>> from bgekit.train.run import train_embedder                          # doctest: +SKIP
    >>> emb = train_embedder(*parse_embedder_args(["--model", "all-MiniLM-L6-v2", "--train_data",
    ...     "train.jsonl", "--output_dir", "out", "--num_train_epochs", "1"]))  # doctest: +SKIP
"""
