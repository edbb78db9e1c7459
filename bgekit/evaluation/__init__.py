"""FlagEmbedding's evaluation command lines: ``python -m bgekit.evaluation.<family> ARGS``.

Families: beir, msmarco, miracl, mldr, mkqa, bright, custom, mteb, air_bench; each accepts every argument of
FlagEmbedding's evaluation dataclasses under the same ``--snake_case`` name and default, runs on bgekit's
loaders, retrieval and metrics (:mod:`bgekit.eval`), and writes FlagEmbedding's files in FlagEmbedding's places.
An option that cannot apply on this machine (``--devices cuda:0`` without a GPU, a download without network)
stops the run before any work with a one-line error saying why. Differences are listed in docs/compat.md
("Command lines").

Example::

    python -m bgekit.evaluation.beir --dataset_dir ./beir/data --dataset_names scifact --splits test \\
        --embedder_name_or_path BAAI/bge-base-en-v1.5 --devices cpu --output_dir ./beir/search_results \\
        --eval_output_path ./beir/beir_eval_results.md --eval_metrics ndcg_at_10 recall_at_100 --k_values 10 100
"""
