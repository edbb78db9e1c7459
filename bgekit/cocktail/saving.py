"""The merged model: rebuilt around the merged tensors (no copy), and saved to a folder that loads with bgekit
whatever it is named (``bgekit_spec.json``), with transformers, and, for embedders, with sentence-transformers.

The folder is written beside the target and moved into place when complete, so an interrupted merge never
leaves a half-written model under the output name.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any

from bgekit.cocktail.params import ModelParams

# files that make up a tokenizer; the first model's are copied as they are
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "sentencepiece.bpe.model",
                   "spiece.model", "chat_template.jinja", "chat_template.json")
M3_HEADS = ("colbert_linear.pt", "sparse_linear.pt")
ST_POOLING = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "last_token": "pooling_mode_lasttoken"}


def build_model(first: ModelParams, merged: dict[str, Any]):
    """A transformers model of the first model's class holding ``merged`` (the tensors are used, not copied),
    in eval mode, as LM-Cocktail returns it."""
    import torch

    from bgekit.backends import loading_bar_for
    from bgekit.cocktail.params import auto_model_class

    cls = auto_model_class_for(first)
    with loading_bar_for(first.path):  # the merged model is the first one's size: no bar for a small one
        if cls is not None:
            model = cls.from_pretrained(None, config=first.config, state_dict=merged, dtype=torch.float32)
        else:  # remote code: no class to build from a config alone; load the first model and overwrite its weights
            model = auto_model_class(_model_type(first)).from_pretrained(first.path, dtype=torch.float32,
                                                                         trust_remote_code=True)
            model.load_state_dict(merged)
    return model.eval()


def auto_model_class_for(first: ModelParams):
    import transformers

    mapping = getattr(transformers, first.auto_class)._model_mapping
    try:
        return mapping[type(first.config)]
    except KeyError:
        return None


def _model_type(first: ModelParams) -> str:
    from bgekit.cocktail.params import AUTO_CLASSES

    return next(k for k, v in AUTO_CLASSES.items() if v == first.auto_class)


def save_merged(model: Any, models: list[ModelParams], weights: list[float], model_type: str, output_path: str) -> str:
    """Write the merged model, the first model's tokenizer, BGE-M3's heads merged with the same weights, the
    sentence-transformers layout (embedders) and bgekit's spec file into ``output_path`` (created, or its files
    replaced). Returns ``output_path``."""
    first = models[0]
    from bgekit.registry import write_spec_file

    parent = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(output_path))}.", suffix=".tmp", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the model folder follows the umask like any folder
    from bgekit.backends import loading_bar_for

    try:
        with loading_bar_for(first.path):  # the same size as the model written: no bar for a small one
            model.save_pretrained(tmp)
        _copy_tokenizer(first.path, tmp)
        _merge_heads(models, weights, tmp)
        spec = merged_spec(first, model_type)
        if model_type == "encoder" and spec.is_embedder and spec.kind != "m3":
            _write_sentence_transformers(first, tmp, spec.pooling or "cls")
        write_spec_file(tmp, spec)
        _publish(tmp, output_path)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return output_path


def merged_spec(first: ModelParams, model_type: str):
    """The ModelSpec the merged folder carries: the first model's (its saved spec file, else its table row and files;
    a "decoder" merge of a model named in the reranker table, such as bge-reranker-v2-gemma, stays an LLM reranker)."""
    from bgekit.registry import RERANKERS, lookup, read_spec_file, resolve, resolve_reranker

    saved = read_spec_file(first.path)
    if saved is not None:
        return saved
    if model_type == "reranker" or (model_type == "decoder" and lookup(first.name, RERANKERS) is not None):
        return resolve_reranker(first.name, folder=first.path)
    return resolve(first.name, folder=first.path)


def _merge_heads(models: list[ModelParams], weights: list[float], folder: str) -> None:
    """BGE-M3's ColBERT and sparse heads (small torch files beside the weights), averaged like the backbone."""
    import torch

    from bgekit.cocktail.params import MergeMismatch

    for name in M3_HEADS:
        if not os.path.isfile(os.path.join(models[0].path, name)):
            continue
        merged: dict[str, Any] = {}
        for i, (m, w) in enumerate(zip(models, weights)):
            path = os.path.join(m.path, name)
            if not os.path.isfile(path):
                raise MergeMismatch(f"{m.name!r} has no {name} but {models[0].name!r} has: merge BGE-M3 models with BGE-M3 models")
            for key, t in torch.load(path, map_location="cpu", weights_only=True).items():
                if i and (key not in merged or merged[key].shape != t.shape):
                    raise MergeMismatch(f"{name} of {m.name!r}: tensor {key!r} does not match {models[0].name!r}'s")
                merged[key] = w * t.float() if i == 0 else merged[key] + w * t.float()
        torch.save(merged, os.path.join(folder, name))


def _copy_tokenizer(src: str, dst: str) -> None:
    copied = False
    for name in TOKENIZER_FILES:
        if os.path.isfile(os.path.join(src, name)):
            shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
            copied = True
    if not copied:  # a tokenizer in another layout: let transformers write it
        from bgekit import backends

        backends.load_tokenizer(src).save_pretrained(dst)


def _write_sentence_transformers(first: ModelParams, folder: str, pooling: str) -> None:
    """modules.json, the pooling config, Normalize, and sentence_bert_config.json (the first model's, else the
    position limit), as sentence-transformers saves an embedder, so ``SentenceTransformer(folder)`` loads it."""
    hidden = first.config.get_text_config().hidden_size
    modes = {v: k == pooling for k, v in ST_POOLING.items()}
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    files: dict[str, Any] = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
                                  "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
                                  "pooling_mode_mean_sqrt_len_tokens": False,
                                  "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False,
                                  "include_prompt": True, **modes},
        "sentence_bert_config.json": _st_config(first),
        "config_sentence_transformers.json": {"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    }
    for name, data in files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def _st_config(first: ModelParams) -> dict:
    path = os.path.join(first.path, "sentence_bert_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    limit = getattr(first.config, "max_position_embeddings", None) or 512
    tok_max = _json(os.path.join(first.path, "tokenizer_config.json")).get("model_max_length") or limit
    return {"max_seq_length": int(min(limit, tok_max)), "do_lower_case": False}


def _json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _publish(tmp: str, output_path: str) -> None:
    """Move the finished folder into place: a rename when ``output_path`` is new (or an empty folder), else file
    by file over the existing files (as saving into an existing folder does)."""
    if os.path.isdir(output_path) and not os.listdir(output_path):
        os.rmdir(output_path)
    if not os.path.exists(output_path):
        os.replace(tmp, output_path)
        return
    if not os.path.isdir(output_path):
        from bgekit.errors import OutputError

        raise OutputError(f"output_path {output_path!r} is a file; give a folder")
    for root, _, names in os.walk(tmp):
        rel = os.path.relpath(root, tmp)
        os.makedirs(os.path.join(output_path, rel), exist_ok=True)
        for name in names:
            os.replace(os.path.join(root, name), os.path.join(output_path, rel, name))
