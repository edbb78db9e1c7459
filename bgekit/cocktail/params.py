"""Parameters of the models to merge: what each model holds (checked before any weight is read), read one tensor
at a time from safetensors, and summed with their weights into one running state dict.

The merge follows LM-Cocktail's arithmetic: for every key of the first model, in its order,
``merged = w0*t0``, then ``merged += wi*ti`` for each later model, in float32 (``w`` a Python float times a
float32 tensor, so the result is bit-identical to the reference). Tensors that are not floating point (integer
and bool buffers) are not averaged: the last model's tensor is kept, as the reference does for integers.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from bgekit.errors import ModelMismatch

# model_type -> the transformers auto class LM-Cocktail loads it with
AUTO_CLASSES = {"encoder": "AutoModel", "decoder": "AutoModelForCausalLM", "reranker": "AutoModelForSequenceClassification"}


class MergeMismatch(ModelMismatch):
    """Models that cannot be merged: different architectures, key sets or tensor shapes (model and tensor named)."""


@dataclass
class ModelParams:
    """One model to merge: where it is, its config, and the (name -> shape, dtype) of its state dict."""

    name: str
    path: str
    config: Any
    shapes: dict[str, tuple]
    files: list[str]  # safetensors files holding every state-dict key ([] = load the model with transformers)
    auto_class: str
    trust_remote_code: bool


def auto_model_class(model_type: str):
    import transformers

    return getattr(transformers, AUTO_CLASSES[model_type])


def inspect_model(name: str, model_type: str, trust_remote_code: bool = False) -> ModelParams:
    """Read a model's config and build it on the meta device (no weights) to learn its state dict's keys and shapes.

    Raises:
        ModelFileError / ModelError: the model cannot be found (see :func:`bgekit.backends.locate`).
    """
    import torch
    import transformers

    from bgekit import backends

    path = backends.locate(name)
    config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        meta = auto_model_class(model_type).from_config(config, trust_remote_code=trust_remote_code)
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in meta.state_dict().items()}
    return ModelParams(name, path, config, shapes, _safetensors_files(path, set(shapes)), AUTO_CLASSES[model_type],
                       trust_remote_code)


def _safetensors_files(path: str, keys: set[str]) -> list[str]:
    """The safetensors file(s) of a folder when they hold every key of ``keys`` under its own name (extra keys,
    such as an old checkpoint's ``position_ids`` buffer, are not read; transformers ignores them too); [] otherwise
    (other names, tied weights stored once, a .bin checkpoint): such a model is loaded whole with transformers."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map", {})
        files = sorted({os.path.join(path, v) for v in weight_map.values()})
        return files if keys <= set(weight_map) else []
    single = os.path.join(path, "model.safetensors")
    if not os.path.isfile(single):
        return []
    from safetensors import safe_open

    with safe_open(single, "pt") as f:
        return [single] if keys <= set(f.keys()) else []


def check_compatible(models: list[ModelParams]) -> None:
    """Every model must have the first one's architecture, state-dict keys and tensor shapes.

    Raises:
        MergeMismatch: naming the model, and the first tensor that differs.
    """
    first = models[0]
    for m in models[1:]:
        a, b = getattr(first.config, "model_type", None), getattr(m.config, "model_type", None)
        if a != b:
            raise MergeMismatch(f"cannot merge {m.name!r} (model_type {b!r}) with {first.name!r} (model_type {a!r}): "
                                "the models must share one architecture")
        missing = [k for k in first.shapes if k not in m.shapes]
        extra = [k for k in m.shapes if k not in first.shapes]
        if missing or extra:
            what = f"lacks tensor {missing[0]!r}" if missing else f"has tensor {extra[0]!r}"
            raise MergeMismatch(f"cannot merge {m.name!r} with {first.name!r}: {m.name!r} {what} that the other does not "
                                f"({len(missing)} missing, {len(extra)} extra tensors)")
        for k, (shape, _) in first.shapes.items():
            if m.shapes[k][0] != shape:
                raise MergeMismatch(f"cannot merge {m.name!r} with {first.name!r}: tensor {k!r} has shape "
                                    f"{list(m.shapes[k][0])} in {m.name!r} but {list(shape)} in {first.name!r}")


def iter_params(model: ModelParams) -> Iterator[tuple[str, Any]]:
    """(name, tensor) pairs of a model's state dict; streamed from safetensors when possible, else from the model
    loaded whole in float32 (as LM-Cocktail loads it)."""
    if model.files:
        from safetensors import safe_open

        for file in model.files:
            with safe_open(file, "pt") as f:
                for key in f.keys():
                    if key in model.shapes:
                        yield key, f.get_tensor(key)
        return
    yield from load_whole(model).state_dict().items()


def load_whole(model: ModelParams):
    """The model loaded with transformers in float32, in eval mode.

    Raises:
        MergeMismatch: the checkpoint lacks weights the model class needs (transformers would initialise them at
            random, differently on every load: e.g. an embedder checkpoint merged as a "reranker", or an LLM
            without its ``lm_head`` merged as a "decoder").
    """
    import torch
    import transformers

    from bgekit.backends import loading_bar_for

    cls = getattr(transformers, model.auto_class)
    with loading_bar_for(model.path):  # a bar per merged model is noise for a small one
        loaded, info = cls.from_pretrained(model.path, dtype=torch.float32, trust_remote_code=model.trust_remote_code,
                                           output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise MergeMismatch(f"{model.name!r} has no weights for tensor {missing[0]!r} ({len(missing)} missing), so "
                            f"{model.auto_class} would initialise them at random; is it the right model_type for this "
                            f"checkpoint (its architectures: {getattr(model.config, 'architectures', None)})?")
    return loaded.eval()


def weighted_sum(models: list[ModelParams], weights: list[float],
                 read: Callable[[ModelParams], Iterator[tuple[str, Any]]] = iter_params) -> dict[str, Any]:
    """``sum_i weights[i] * state_dict_i`` over the first model's keys, in float32, reading one model at a time.

    Returns:
        The merged state dict (ordered like the first model's); non-floating tensors come from the last model.
    """
    import torch

    order = list(models[0].shapes)
    merged: dict[str, Any] = {}
    for i, (model, w) in enumerate(zip(models, weights)):
        seen = set()
        for key, tensor in read(model):
            if key not in models[0].shapes:
                continue  # check_compatible guarantees equal key sets; a loaded model's extra buffers are not merged
            seen.add(key)
            if tensor.shape != models[0].shapes[key][0]:
                raise MergeMismatch(f"tensor {key!r} of {model.name!r} has shape {list(tensor.shape)}, expected "
                                    f"{list(models[0].shapes[key][0])}")
            if not tensor.is_floating_point():
                merged[key] = tensor.clone()  # integer / bool buffers: the last model's
            elif i == 0:
                merged[key] = w * tensor.to(torch.float32)
            else:
                merged[key] += w * tensor.to(torch.float32)
        lost = [k for k in order if k not in seen]
        if lost:
            raise MergeMismatch(f"{model.name!r} has no tensor {lost[0]!r} in its weights ({len(lost)} missing)")
    return {k: merged[k] for k in order}


def load_into(model: Any, params: ModelParams) -> None:
    """Load one candidate's weights into ``model`` (same architecture), tensor by tensor, without a second copy."""
    import torch

    state = model.state_dict()
    with torch.no_grad():
        for key, tensor in iter_params(params):
            if key in state:
                state[key].copy_(tensor)
