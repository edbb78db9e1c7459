"""Merge a LoRA adapter into its LLM reranker and save a folder every bgekit and FlagEmbedding loader reads.

The three helpers of FlagEmbedding's LLM-reranker research code (``FlagEmbedding.llm_reranker.merge``), same
names and arguments:

- :func:`merge_llm`: a "Yes"-logit LLM reranker (e.g. gemma) and its adapter;
- :func:`merge_layerwise_finetuned_llm`: a layerwise MiniCPM reranker (bge-reranker-v2-minicpm-layerwise) and
  an adapter trained from it;
- :func:`merge_layerwise_raw_llm`: a raw MiniCPM language model and an adapter trained from it (the new score
  heads travel in the adapter; their layout, ``start_layer`` / ``head_multi``, is read from the ``config.json``
  saved beside the adapter or in its parent folder, as bgekit's training writes it).

The base model is rebuilt exactly as bgekit's reranker training builds it, so an adapter from
``bgekit train reranker`` / ``bgekit.finetune.reranker...`` (its ``output_dir/adapter``) or from FlagEmbedding
merges into the same weights. The tokenizer comes from the adapter folder when it has one, else from the model.

Example:
    >>> from bgekit.finetune.merge import merge_llm
    >>> merge_llm("BAAI/bge-reranker-v2-gemma", "out/adapter", "merged")   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os


def _adapter_config(lora_name_or_path: str) -> dict:
    """The model config saved with the adapter (the adapter folder, else its parent), or {}."""
    for folder in (lora_name_or_path, os.path.dirname(os.path.normpath(lora_name_or_path))):
        path = os.path.join(folder, "config.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    return {}


def _merge(model_name_or_path: str, lora_name_or_path: str, save_path: str, model_class: str, model_type: str | None,
           cache_dir: str | None, token: str | None) -> str:
    from bgekit import backends
    from bgekit.train.adapters import ADAPTER_CONFIG, merge_adapter
    from bgekit.train.reranker import RerankerTrainModel
    from bgekit.train.reranker_args import RerankerModelArguments
    from bgekit.train.run_reranker import load_reranker_model, resolve_reranker_kind

    if not os.path.isfile(os.path.join(lora_name_or_path, ADAPTER_CONFIG)):
        raise FileNotFoundError(f"{lora_name_or_path!r} is not a LoRA adapter folder (no {ADAPTER_CONFIG})")
    heads = {}
    if model_type == "from_raw_model":
        saved = _adapter_config(lora_name_or_path)
        heads = {k: saved[k] for k in ("start_layer", "head_multi") if k in saved}
    args = RerankerModelArguments(model_name_or_path=model_name_or_path, model_class=model_class, model_type=model_type,
                                  cache_dir=cache_dir, token=token, **heads)
    path = backends.locate(model_name_or_path, cache_dir)
    kind, spec, is_reranker = resolve_reranker_kind(args, path)
    remote = spec.trust_remote_code
    has_tokenizer = any(os.path.isfile(os.path.join(lora_name_or_path, f)) for f in ("tokenizer.json", "tokenizer_config.json"))
    extra = {"config": __import__("transformers").PretrainedConfig()} if kind == "layerwise" else {}
    tokenizer = backends.load_tokenizer(lora_name_or_path if has_tokenizer else path, trust_remote_code=remote, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    model = load_reranker_model(kind, path, args, remote, is_reranker, tokenizer)
    model = merge_adapter(model, lora_name_or_path)
    RerankerTrainModel(model, tokenizer, spec).save_to(save_path)
    return save_path


def merge_llm(model_name_or_path: str, lora_name_or_path: str, save_path: str, cache_dir: str | None = None,
              token: str | None = None) -> str:
    """Merge an LLM ("Yes"-logit) reranker's adapter; returns ``save_path``."""
    return _merge(model_name_or_path, lora_name_or_path, save_path, "decoder-only-base", None, cache_dir, token)


def merge_layerwise_finetuned_llm(model_name_or_path: str, lora_name_or_path: str, save_path: str,
                                  cache_dir: str | None = None, token: str | None = None) -> str:
    """Merge the adapter of a layerwise reranker fine-tuned from a layerwise checkpoint; returns ``save_path``."""
    return _merge(model_name_or_path, lora_name_or_path, save_path, "decoder-only-layerwise", "from_finetuned_model",
                  cache_dir, token)


def merge_layerwise_raw_llm(model_name_or_path: str, lora_name_or_path: str, save_path: str,
                            cache_dir: str | None = None, token: str | None = None) -> str:
    """Merge the adapter of a layerwise reranker trained from a raw MiniCPM model; returns ``save_path``."""
    return _merge(model_name_or_path, lora_name_or_path, save_path, "decoder-only-layerwise", "from_raw_model",
                  cache_dir, token)


__all__ = ["merge_llm", "merge_layerwise_raw_llm", "merge_layerwise_finetuned_llm"]
