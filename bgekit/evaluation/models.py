"""Load the embedder and reranker an evaluation command line names, the way FlagEmbedding's runner does.

FlagEmbedding hands every model argument to ``FlagAutoModel.from_finetuned`` / ``FlagAutoReranker.from_finetuned``
and the chosen class ignores what it does not use. bgekit's classes reject unknown keywords, so each argument
goes to the class only if that class takes it; an argument the class cannot use is an error when it was set
(a value other than FlagEmbedding's default), and left out otherwise.
"""
from __future__ import annotations

import inspect
import json
import os
from typing import Any

# from_finetuned keyword <- model-argument field (FlagEmbedding's AbsEvalRunner.get_models)
EMBEDDER_KWARGS = {
    "model_class": "embedder_model_class", "normalize_embeddings": "normalize_embeddings",
    "pooling_method": "pooling_method", "use_fp16": "use_fp16", "use_bf16": "use_bf16",
    "query_instruction_for_retrieval": "query_instruction_for_retrieval",
    "query_instruction_format": "query_instruction_format_for_retrieval", "devices": "devices",
    "examples_for_task": "examples_for_task", "examples_instruction_format": "examples_instruction_format",
    "trust_remote_code": "trust_remote_code", "cache_dir": "cache_dir", "domain_for_pseudo_moe": "domain_for_pseudo_moe",
    "batch_size": "embedder_batch_size", "query_max_length": "embedder_query_max_length",
    "passage_max_length": "embedder_passage_max_length", "truncate_dim": "truncate_dim",
}
RERANKER_KWARGS = {
    "model_class": "reranker_model_class", "peft_path": "reranker_peft_path", "use_fp16": "use_fp16",
    "use_bf16": "use_bf16", "query_instruction_for_rerank": "query_instruction_for_rerank",
    "query_instruction_format": "query_instruction_format_for_rerank",
    "passage_instruction_for_rerank": "passage_instruction_for_rerank",
    "passage_instruction_format": "passage_instruction_format_for_rerank", "cache_dir": "cache_dir",
    "trust_remote_code": "trust_remote_code", "devices": "devices", "normalize": "normalize", "prompt": "prompt",
    "cutoff_layers": "cutoff_layers", "compress_layers": "compress_layers", "compress_ratio": "compress_ratio",
    "batch_size": "reranker_batch_size", "query_max_length": "reranker_query_max_length",
    "max_length": "reranker_max_length",
}
# from_finetuned's own parameters: always accepted whatever class it picks
_EMBEDDER_OWN = {"model_class", "normalize_embeddings", "use_fp16", "use_bf16", "query_instruction_for_retrieval",
                 "devices", "pooling_method", "trust_remote_code", "query_instruction_format", "truncate_dim"}
_RERANKER_OWN = {"model_class", "use_fp16", "trust_remote_code"}


def check_devices(devices: Any) -> None:
    """Refuse, before any loading, a device this machine does not have (``--devices cuda:0`` on a CPU box)."""
    import torch

    for device in [devices] if isinstance(devices, (str, int)) else list(devices or []):
        name = str(device)
        kind, _, index = name.partition(":")
        if kind == "cpu":
            continue
        backend = getattr(torch, kind, None)
        available = bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())
        if available and index.isdigit() and hasattr(backend, "device_count"):
            available = int(index) < backend.device_count()
        if not available:
            raise ValueError(f"--devices {name}: this machine has no such device (torch sees no {kind.upper()} "
                             f"device{' ' + index if index else ''}); pass --devices cpu, or leave --devices out")


def load_examples(value: str | None) -> list[dict] | None:
    """``--examples_for_task``: a .json / .jsonl file, or JSON text, holding a list of {instruct, query, response}."""
    if value is None:
        return None
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as f:
            text = f.read()
        if value.endswith(".jsonl"):
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
    else:
        try:
            items = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"--examples_for_task {value!r} is neither a file nor JSON text: {e}") from e
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError(f"--examples_for_task {value!r}: expected a list of objects with instruct, query, response")
    return items


def _defaults(args_type: type) -> dict[str, Any]:
    import dataclasses

    out = {}
    for f in dataclasses.fields(args_type):
        out[f.name] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return out


def _select(klass: type, own: set[str], table: dict[str, str], model_args: Any, values: dict[str, Any],
            role: str) -> dict[str, Any]:
    """The keywords ``klass`` takes; a set option it cannot take raises ValueError naming both."""
    params = inspect.signature(klass.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and klass.__init__ is not object.__init__
    defaults = _defaults(type(model_args))
    kwargs = {}
    for key, value in values.items():
        if key in own or key in params or accepts_any:
            kwargs[key] = value
        elif table.get(key) in defaults and value != defaults[table[key]] and value is not None:
            raise ValueError(f"--{table[key]} {value!r} does not apply to the {role} {klass.__name__} "
                             f"({getattr(model_args, role + '_name_or_path')}): it takes no {key}")
    return kwargs


def embedder_class(path: str, model_class: str | None, cache_dir: str | None) -> type:
    """The compat class ``FlagAutoModel.from_finetuned`` picks for ``path``."""
    from bgekit.compat import embedder as compat

    if model_class is None:
        from bgekit.backends import locate
        from bgekit.registry import resolve

        spec = resolve(path, folder=locate(path, cache_dir))
        if not spec.is_embedder:
            raise ValueError(f"--embedder_name_or_path {path!r} is a {spec.kind} reranker, not an embedder")
        model_class = compat._KIND_TO_CLASS[spec.kind]
    if model_class not in compat.MODEL_CLASSES:
        raise ValueError(f"--embedder_model_class {model_class!r} is not available; valid: {', '.join(compat.MODEL_CLASSES)}")
    return compat.MODEL_CLASSES[model_class]()


def reranker_class(path: str, model_class: str | None, cache_dir: str | None) -> type:
    """The compat class ``FlagAutoReranker.from_finetuned`` picks for ``path``."""
    from bgekit.compat import reranker as compat

    if model_class is None:
        from bgekit.backends import locate
        from bgekit.registry import resolve_reranker

        model_class = compat.KIND_TO_CLASS[resolve_reranker(path, folder=locate(path, cache_dir)).kind]
    return compat.RERANKER_CLASSES[model_class]()


def load_models(model_args: Any) -> tuple[Any, Any]:
    """(embedder, reranker or None) as FlagEmbedding's evaluation loads them."""
    from bgekit.compat.embedder import FlagAutoModel
    from bgekit.compat.reranker import FlagAutoReranker

    check_devices(model_args.devices)
    values = {key: getattr(model_args, name) for key, name in EMBEDDER_KWARGS.items()}
    values["examples_for_task"] = load_examples(values["examples_for_task"])
    klass = embedder_class(model_args.embedder_name_or_path, model_args.embedder_model_class, model_args.cache_dir)
    kwargs = _select(klass, _EMBEDDER_OWN, EMBEDDER_KWARGS, model_args, values, "embedder")
    embedder = FlagAutoModel.from_finetuned(model_args.embedder_name_or_path, **kwargs)
    reranker = None
    if model_args.reranker_name_or_path is not None:
        values = {key: getattr(model_args, name) for key, name in RERANKER_KWARGS.items()}
        klass = reranker_class(model_args.reranker_name_or_path, model_args.reranker_model_class, model_args.cache_dir)
        kwargs = _select(klass, _RERANKER_OWN, RERANKER_KWARGS, model_args, values, "reranker")
        reranker = FlagAutoReranker.from_finetuned(model_args.reranker_name_or_path, **kwargs)
    return embedder, reranker


def model_name(path: str) -> str:
    """The results-folder name of a model: the last part of its path (FlagEmbedding's rule)."""
    return os.path.basename(os.path.normpath(path))
