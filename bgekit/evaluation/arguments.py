"""FlagEmbedding's evaluation arguments: the same option names, spellings and defaults.

Every ``python -m bgekit.evaluation.<family>`` parses two of these dataclasses (evaluation + model), exactly
as ``python -m FlagEmbedding.evaluation.<family>`` does; :mod:`bgekit.evaluation.runner` maps them onto
:mod:`bgekit.eval` and says, for each option it cannot apply here, why (see docs/compat.md, "Command lines").
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

EMBEDDER_MODEL_CLASSES = ("encoder-only-base", "encoder-only-m3", "decoder-only-base", "decoder-only-icl",
                          "decoder-only-pseudo_moe")
RERANKER_MODEL_CLASSES = ("encoder-only-base", "decoder-only-base", "decoder-only-layerwise", "decoder-only-lightweight")


def _f(default: Any = None, help: str = "", factory: Any = None, **meta: Any) -> Any:
    """A dataclass field with argparse metadata (``nargs``, ``choices``) the way HfArgumentParser reads it."""
    meta["help"] = help
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _unescape(obj: Any, names: tuple[str, ...]) -> None:
    """A literal backslash-n typed on a command line becomes a newline (as FlagEmbedding does)."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, str) and "\\n" in value:
            setattr(obj, name, value.replace("\\n", "\n"))


@dataclass
class AbsEvalArgs:
    """Where the data is, what to retrieve, where results go (FlagEmbedding's ``AbsEvalArgs``)."""

    eval_name: str = _f(None, "Name of the evaluation (recorded in every search-results file; default: the family).")
    dataset_dir: str | None = _f(None, "Folder of the datasets: DATASET_DIR/<name>/ holds corpus.jsonl, "
                                 "<split>_queries.jsonl, <split>_qrels.jsonl (or the BEIR layout); downloads are saved there.")
    force_redownload: bool = _f(False, "Download again even if dataset_dir holds the dataset.")
    dataset_names: str | None = _f(None, "Datasets to evaluate (default: all of the family).", nargs="+")
    splits: str = _f("test", "Splits to evaluate.", nargs="+")
    corpus_embd_save_dir: str = _f(None, "Save corpus embeddings as <dir>/<model>/<dataset>/doc.npy and reuse them.")
    output_dir: str = _f("./search_results", "Search results go to <output_dir>/<model>/<reranker or NoReranker>/.")
    search_top_k: int = _f(1000, "Documents retrieved per query.")
    rerank_top_k: int = _f(100, "Documents reranked per query.")
    cache_path: str = _f(None, "Cache folder for hub downloads (<cache_path>/<eval_name>).")
    token: str = _f(None, "Hugging Face token for hub downloads (default: $HF_TOKEN).", factory=lambda: os.getenv("HF_TOKEN", None))
    overwrite: bool = _f(False, "Recompute search results and embeddings that already exist.")
    ignore_identical_ids: bool = _f(False, "Drop a retrieved document whose id equals the query id.")
    k_values: int = _f(None, "Metric cutoffs.", factory=lambda: [1, 3, 5, 10, 100, 1000], nargs="+")
    eval_output_method: str = _f("markdown", "Write the summary as json or markdown.", choices=["json", "markdown"])
    eval_output_path: str = _f("./eval_results.md", "Where the summary goes.")
    eval_metrics: str = _f(None, "Metrics of the markdown summary, e.g. ndcg_at_10 recall_at_100.",
                           factory=lambda: ["ndcg_at_10", "recall_at_10"], nargs="+")


@dataclass
class _ModelArgs:
    """The embedder and optional reranker, and how they encode / score (all but where models are cached)."""

    embedder_name_or_path: str = _f(None, "Embedder folder or hub name.", required=True)
    embedder_model_class: str | None = _f(None, "Embedder class (default: from the model).", choices=list(EMBEDDER_MODEL_CLASSES))
    normalize_embeddings: bool = _f(True, "L2-normalise embeddings.")
    pooling_method: str | None = _f(None, "cls, mean or last_token (default: the model's).")
    use_fp16: bool = _f(True, "Half precision on a GPU (CPU runs fp32, as FlagEmbedding does).")
    devices: str | None = _f(None, "Devices, e.g. cpu or cuda:0 cuda:1.", nargs="+")
    query_instruction_for_retrieval: str | None = _f(None, "Query instruction.")
    query_instruction_format_for_retrieval: str = _f("{}{}", "Template: instruction, query.")
    examples_for_task: str | None = _f(None, "ICL examples: a .json / .jsonl file (or JSON text) of {instruct, query, response}.")
    examples_instruction_format: str = _f("{}{}", "ICL: template of one example.")
    trust_remote_code: bool = _f(False, "Run the model folder's own code.")
    reranker_name_or_path: str | None = _f(None, "Reranker folder or hub name (default: no reranking).")
    reranker_model_class: str | None = _f(None, "Reranker class (default: from the model).", choices=list(RERANKER_MODEL_CLASSES))
    reranker_peft_path: str | None = _f(None, "LoRA adapter folder for an LLM reranker.")
    use_bf16: bool = _f(False, "bf16 inference.")
    query_instruction_for_rerank: str | None = _f(None, "Reranker query instruction.")
    query_instruction_format_for_rerank: str = _f("{}{}", "Template: instruction, query.")
    passage_instruction_for_rerank: str | None = _f(None, "Reranker passage instruction.")
    passage_instruction_format_for_rerank: str = _f("{}{}", "Template: instruction, passage.")
    embedder_batch_size: int = _f(3000, "Embedder batch size.")
    reranker_batch_size: int = _f(3000, "Reranker batch size.")
    embedder_query_max_length: int = _f(512, "Query tokens.")
    embedder_passage_max_length: int = _f(512, "Passage tokens.")
    truncate_dim: int | None = _f(None, "Keep the first N embedding dimensions (Matryoshka models).")
    reranker_query_max_length: int | None = _f(None, "Reranker query tokens.")
    reranker_max_length: int = _f(512, "Reranker pair tokens.")
    normalize: bool = _f(False, "Sigmoid the reranker scores.")
    prompt: str | None = _f(None, "LLM reranker prompt.")
    cutoff_layers: list[int] = _f(None, "Layerwise / lightweight reranker: the layers whose scores are used.")
    compress_ratio: int = _f(1, "Lightweight reranker: token compression ratio.")
    compress_layers: int | None = _f(None, "Lightweight reranker: layers that compress.", nargs="+")

    def __post_init__(self) -> None:
        _unescape(self, ("query_instruction_format_for_retrieval", "examples_instruction_format",
                         "query_instruction_format_for_rerank", "passage_instruction_format_for_rerank"))


@dataclass
class AbsEvalModelArgs(_ModelArgs):
    """The embedder and optional reranker (FlagEmbedding's ``AbsEvalModelArgs``)."""

    cache_dir: str = _f(None, "Hub cache folder for models.")
    domain_for_pseudo_moe: str | None = _f(None, "decoder-only-pseudo_moe: the domain (general, coding, reasoning ...).")


@dataclass
class BEIREvalArgs(AbsEvalArgs):
    """BEIR: optionally each dataset's own query instruction."""

    use_special_instructions: bool = _f(False, "Use each BEIR dataset's published query instruction.")


@dataclass
class BrightEvalArgs(AbsEvalArgs):
    """BRIGHT: short or long documents, per-dataset instructions on by default."""

    task_type: str = _f("short", "short or long documents.", choices=["short", "long"])
    use_special_instructions: bool = _f(True, "Use each BRIGHT dataset's published query instruction.")


@dataclass
class MTEBEvalArgs(AbsEvalArgs):
    """MTEB: tasks chosen by name, language and type (run with the ``mteb`` package)."""

    languages: list[str] = _f(None, "Languages (ISO 639-3), e.g. eng.")
    tasks: list[str] = _f(None, "Task names.")
    task_types: list[str] = _f(None, "Task types, e.g. Retrieval STS.")
    use_special_instructions: bool = _f(False, "Use each task's published query instruction.")
    examples_path: str = _f(None, "ICL: a folder of <task>.csv example files.")


@dataclass
class AIRBenchEvalArgs:
    """AIR-Bench (the ``air_benchmark`` package's evaluation arguments)."""

    benchmark_version: str = _f("AIR-Bench_24.05", "Benchmark version.")
    task_types: list[str] = _f(None, "qa and/or long-doc (default: all).")
    domains: list[str] = _f(None, "Domains, e.g. arxiv wiki (default: all).")
    languages: list[str] = _f(None, "Languages, e.g. en zh (default: all).")
    splits: list[str] = _f(None, "dev and/or test (default: all).")
    output_dir: str = _f("./search_results", "Search results go here.")
    search_top_k: int = _f(1000, "Documents retrieved per query.")
    rerank_top_k: int = _f(100, "Documents reranked per query.")
    cache_dir: str = _f(None, "Hub cache folder for the benchmark data.")
    bm25_tmp_dir: str = _f("./bm25_tmp_dir", "AIR-Bench's BM25 baseline only.")
    remove_bm25_tmp_dir: bool = _f(True, "AIR-Bench's BM25 baseline only.")
    overwrite: bool = _f(False, "Recompute existing search results.")


@dataclass
class AIRBenchEvalModelArgs(_ModelArgs):
    """AIR-Bench's model arguments: ``model_cache_dir`` (``--cache_dir`` is the data's), cls pooling by default."""

    pooling_method: str = _f("cls", "cls, mean or last_token.")
    embedder_model_class: str | None = _f(None, "Embedder class (default: from the model).", choices=list(EMBEDDER_MODEL_CLASSES[:4]))
    model_cache_dir: str = _f(None, "Hub cache folder for models.")

    @property
    def cache_dir(self) -> str | None:
        return self.model_cache_dir

    domain_for_pseudo_moe = None


# FlagEmbedding's per-family class names, for ``from bgekit.evaluation.beir import BEIREvalModelArgs`` and friends
BEIREvalModelArgs = MSMARCOEvalModelArgs = MIRACLEvalModelArgs = MLDREvalModelArgs = MKQAEvalModelArgs = \
    BrightEvalModelArgs = MTEBEvalModelArgs = CustomEvalModelArgs = AbsEvalModelArgs
MSMARCOEvalArgs = MIRACLEvalArgs = MLDREvalArgs = MKQAEvalArgs = CustomEvalArgs = AbsEvalArgs
