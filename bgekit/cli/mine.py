"""`bgekit mine` (hard negatives) and `bgekit label` (teacher scores) for FlagEmbedding-format jsonl data.

The options are those of FlagEmbedding's ``scripts/hn_mine.py`` and ``scripts/add_reranker_score.py`` (each also
spelled ``--kebab-case``), plus short names and a few of our own; ``bgekit mine --help`` lists them all.

Example::

    bgekit mine --model all-MiniLM-L6-v2 --input train.jsonl --output train_minedHN.jsonl \\
        --range-for-sampling 2-200 --negative-number 15
    bgekit label --reranker BAAI/bge-reranker-v2-m3 --input train_minedHN.jsonl --output train_scored.jsonl
"""
from __future__ import annotations

import argparse
import json

from bgekit.cli.checks import check_input
from dataclasses import dataclass, field
from typing import Any

# FlagEmbedding's model_class values (bgekit.train.args.MODEL_CLASSES and bgekit.compat.reranker.RERANKER_CLASSES;
# spelled out here so that building the CLI parser imports neither transformers nor torch)
EMBEDDER_CLASSES = ("encoder-only-base", "encoder-only-m3", "decoder-only-base", "decoder-only-icl")
RERANKER_CLASSES = ("encoder-only-base", "decoder-only-base", "decoder-only-layerwise", "decoder-only-lightweight")


@dataclass
class FileArguments:
    """Input and output files."""

    input_file: str = field(metadata={"help": "jsonl with 'query' and 'pos' (and optionally 'neg').", "aliases": ["--input"]})
    output_file: str = field(metadata={"help": "Where to write the jsonl (atomically; may equal the input).", "aliases": ["--output"]})


@dataclass
class MineArguments:
    """How negatives are chosen (hn_mine.py's names)."""

    candidate_pool: str | None = field(default=None, metadata={"help": "Texts to search: jsonl with 'text', or .txt (default: the input's pos and neg)."})
    range_for_sampling: str = field(default="10-210", metadata={"help": "A-B: sample from hit positions A..B-1 (0-based), e.g. 2-200."})
    negative_number: int = field(default=15, metadata={"help": "Negatives per example."})
    seed: int = field(default=42, metadata={"help": "Sampling seed (the output depends only on it and the input)."})
    fill_random: bool = field(default=True, metadata={"help": "Fill up with random pool texts when the range gives too few."})
    use_gpu_for_searching: bool = field(default=False, metadata={"help": "Accepted for hn_mine.py scripts; search runs on CPU (exact)."})
    search_batch_size: int = field(default=64, metadata={"help": "Queries per search call."})
    false_negative_mode: str = field(default="ratio", metadata={"help": "With --reranker: ratio, margin or absolute.", "choices": ["ratio", "margin", "absolute"]})
    false_negative_threshold: float = field(default=0.95, metadata={"help": "ratio: drop sigmoid(cand) > t*sigmoid(pos); margin: cand > pos - t; absolute: cand > t."})
    false_negative_candidates: int | None = field(default=None, metadata={"help": "Candidates per query the reranker scores (default: 2 x negative_number)."})


@dataclass
class RuntimeArguments:
    """Devices and precision (shared by the embedder and the reranker)."""

    use_fp16: bool = field(default=True, metadata={"help": "fp16 on GPU (CPU runs fp32)."})
    use_bf16: bool = field(default=False, metadata={"help": "bf16 (also on CPU)."})
    devices: list[str] | None = field(default=None, metadata={"help": "Devices, e.g. cuda:0 cuda:1 (default: all GPUs or CPU)."})
    trust_remote_code: bool | None = field(default=None, metadata={"help": "Default: what the model table says."})
    cache_dir: str | None = field(default=None, metadata={"help": "Hub cache folder."})


@dataclass
class EmbedderArguments:
    """The embedder that retrieves candidates (hn_mine.py's names)."""

    embedder_name_or_path: str = field(default="all-MiniLM-L6-v2", metadata={"help": "Embedder name or folder.", "aliases": ["--model", "--model_name_or_path"]})
    embedder_model_class: str | None = field(default=None, metadata={"help": "Force the kind (default: resolved).", "choices": list(EMBEDDER_CLASSES)})
    normalize_embeddings: bool = field(default=True, metadata={"help": "L2-normalise embeddings."})
    pooling_method: str | None = field(default=None, metadata={"help": "cls, mean or last_token (default: the model's).", "choices": ["cls", "mean", "last_token"]})
    query_instruction_for_retrieval: str | None = field(default=None, metadata={"help": "Query instruction (default: the model's)."})
    query_instruction_format_for_retrieval: str | None = field(default=None, metadata={"help": "Query template (default: the model's)."})
    examples_for_task: str | None = field(default=None, metadata={"help": "ICL models: JSON file with a list of {instruct, query, response}."})
    examples_instruction_format: str = field(default="<instruct>{}\n<query>{}\n<response>{}", metadata={"help": "ICL example template."})
    batch_size: int = field(default=256, metadata={"help": "Encoding batch size.", "aliases": ["--embedder_batch_size"]})
    embedder_query_max_length: int | None = field(default=None, metadata={"help": "Query tokens (default: the model's)."})
    embedder_passage_max_length: int | None = field(default=None, metadata={"help": "Passage tokens (default: the model's)."})


@dataclass
class RerankerArguments:
    """The reranker (add_reranker_score.py's names); for `mine` it turns the false-negative filter on."""

    reranker_name_or_path: str | None = field(default=None, metadata={"help": "Reranker name or folder.", "aliases": ["--reranker"]})
    reranker_model_class: str | None = field(default=None, metadata={"help": "Force the class (default: resolved).", "choices": list(RERANKER_CLASSES)})
    reranker_peft_path: str | None = field(default=None, metadata={"help": "LLM rerankers: a LoRA adapter."})
    query_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Query instruction (default: the class's)."})
    query_instruction_format_for_rerank: str | None = field(default=None, metadata={"help": "Query template."})
    passage_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Passage instruction (default: the class's)."})
    passage_instruction_format_for_rerank: str | None = field(default=None, metadata={"help": "Passage template."})
    reranker_batch_size: int = field(default=128, metadata={"help": "Scoring batch size."})
    reranker_query_max_length: int | None = field(default=None, metadata={"help": "Query tokens (default: 3/4 of max length)."})
    reranker_max_length: int = field(default=512, metadata={"help": "Pair tokens."})
    normalize: bool = field(default=False, metadata={"help": "label: write sigmoid scores."})
    prompt: str | None = field(default=None, metadata={"help": "LLM rerankers: the prompt."})
    cutoff_layers: list[int] | None = field(default=None, metadata={"help": "Layerwise / lightweight: one exit layer."})
    compress_ratio: int | None = field(default=None, metadata={"help": "Lightweight: token compression ratio."})
    compress_layers: list[int] | None = field(default=None, metadata={"help": "Lightweight: layers that compress."})


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def load_embedder_from(e: EmbedderArguments, r: RuntimeArguments):
    """The embedder described by the arguments (unset options keep the model's own settings)."""
    from bgekit.loading import load_embedder

    kwargs = _given(pooling=e.pooling_method, query_instruction=e.query_instruction_for_retrieval,
                    query_instruction_format=e.query_instruction_format_for_retrieval,
                    query_max_length=e.embedder_query_max_length, passage_max_length=e.embedder_passage_max_length,
                    devices=r.devices, trust_remote_code=r.trust_remote_code, cache_dir=r.cache_dir)
    if e.embedder_model_class is not None:
        from bgekit.registry import ModelSpec
        from bgekit.train.args import MODEL_CLASSES

        kwargs["spec"] = ModelSpec(MODEL_CLASSES[e.embedder_model_class],
                                   "last_token" if e.embedder_model_class.startswith("decoder") else "cls")
    if e.examples_for_task is not None:
        with open(e.examples_for_task, encoding="utf-8") as f:
            kwargs["examples"] = json.load(f)
        kwargs["examples_instruction_format"] = e.examples_instruction_format
    return load_embedder(e.embedder_name_or_path, normalize=e.normalize_embeddings, use_fp16=r.use_fp16,
                         use_bf16=r.use_bf16, batch_size=e.batch_size, **kwargs)


def load_reranker_from(a: RerankerArguments, r: RuntimeArguments):
    """The reranker described by the arguments, through FlagAutoReranker (unset options keep the class's defaults)."""
    from bgekit.compat.reranker import FlagAutoReranker

    if a.cutoff_layers is not None and len(a.cutoff_layers) != 1:
        raise ValueError(f"--cutoff_layers: give one exit layer for teacher scores, got {a.cutoff_layers}")
    kwargs = _given(peft_path=a.reranker_peft_path, query_instruction_for_rerank=a.query_instruction_for_rerank,
                    query_instruction_format=a.query_instruction_format_for_rerank,
                    passage_instruction_for_rerank=a.passage_instruction_for_rerank,
                    passage_instruction_format=a.passage_instruction_format_for_rerank,
                    query_max_length=a.reranker_query_max_length, prompt=a.prompt, cutoff_layers=a.cutoff_layers,
                    compress_ratio=a.compress_ratio, compress_layers=a.compress_layers, devices=r.devices,
                    cache_dir=r.cache_dir)
    if r.use_bf16:
        kwargs["use_bf16"] = True
    return FlagAutoReranker.from_finetuned(a.reranker_name_or_path, model_class=a.reranker_model_class,
                                           use_fp16=r.use_fp16, trust_remote_code=r.trust_remote_code,
                                           batch_size=a.reranker_batch_size, max_length=a.reranker_max_length,
                                           normalize=a.normalize, **kwargs)


def parse_mine_args(argv: list[str] | None):
    """(files, mine, runtime, embedder, reranker) argument dataclasses; ValueError names an unknown option."""
    from bgekit.train.args import parse_dataclass_args

    return parse_dataclass_args((FileArguments, MineArguments, RuntimeArguments, EmbedderArguments, RerankerArguments),
                                argv, "bgekit mine")


def parse_label_args(argv: list[str] | None):
    """(files, runtime, reranker) argument dataclasses."""
    from bgekit.train.args import parse_dataclass_args

    files, runtime, reranker = parse_dataclass_args((FileArguments, RuntimeArguments, RerankerArguments), argv, "bgekit label")
    if not reranker.reranker_name_or_path:
        raise ValueError("--reranker (--reranker_name_or_path) is required")
    return files, runtime, reranker


def _precheck(files: FileArguments, runtime: RuntimeArguments, *packages: str) -> None:
    """Before any model loads: the packages, the devices, the input and whether the output can be written."""
    from bgekit.cli.checks import check_devices, check_extras, check_output

    check_extras(*packages)
    check_devices(runtime.devices)
    check_input(files.input_file, "--input_file")
    check_output(files.output_file, "--output_file")


def run_mine(argv: list[str]) -> int:
    from bgekit.cli.embed import read_texts
    from bgekit.train.mine import FalseNegativeFilter, MineConfig, mine_file

    files, m, runtime, emb_args, rr_args = parse_mine_args(argv)
    _precheck(files, runtime, "faiss")
    if m.candidate_pool:
        check_input(m.candidate_pool, "--candidate_pool")
    flt = None
    if rr_args.reranker_name_or_path:
        flt = FalseNegativeFilter(load_reranker_from(rr_args, runtime), m.false_negative_mode, m.false_negative_threshold,
                                  m.false_negative_candidates, rr_args.reranker_batch_size)
    config = MineConfig(m.range_for_sampling, m.negative_number, m.seed, m.fill_random, m.search_batch_size, flt)
    pool = read_texts(m.candidate_pool) if m.candidate_pool else None
    stats = mine_file(load_embedder_from(emb_args, runtime), files.input_file, files.output_file, config, pool)
    print(f"wrote {files.output_file}: {json.dumps(stats)}")
    return 0


def run_label(argv: list[str]) -> int:
    from bgekit.train.label import label_file

    files, runtime, rr_args = parse_label_args(argv)
    _precheck(files, runtime)
    stats = label_file(load_reranker_from(rr_args, runtime), files.input_file, files.output_file, rr_args.reranker_batch_size)
    print(f"wrote {files.output_file}: {json.dumps(stats)}")
    return 0


COMMANDS = {
    "mine": ("mine hard negatives for jsonl training data with an embedder", run_mine),
    "label": ("add reranker teacher scores (pos_scores / neg_scores) to jsonl training data", run_label),
}


def register(subparsers) -> None:
    for name, (help_text, fn) in COMMANDS.items():
        # prefix_chars="+": this parser claims no option, so every --option reaches the dataclass parser.
        p = subparsers.add_parser(name, help=help_text, add_help=False, prefix_chars="+", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("argv", nargs=argparse.REMAINDER, help=f"options; see `bgekit {name} --help`")
        p.set_defaults(func=lambda args, fn=fn: _run(fn, args))


def _run(fn, args: argparse.Namespace) -> int:
    return fn(list(args.argv))
