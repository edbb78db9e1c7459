"""LM-Cocktail's three functions, with its signatures: merge models with given weights, with weights computed
from a few examples, and (the same streaming merge) "by layers"."""
from __future__ import annotations

import functools
import logging
from typing import Any

from bgekit.errors import UsageError

logger = logging.getLogger(__name__)

MODEL_TYPES = ("decoder", "encoder", "reranker")
DATA_MODEL_TYPES = ("decoder", "encoder")
_MISSING = object()


class CocktailArgumentError(UsageError, AssertionError):
    """An argument LM-Cocktail rejects with a bare ``assert`` (so ``except AssertionError`` still catches it)."""


def check_arguments(model_names_or_paths: Any, model_type: Any, weights: Any = None,
                    valid_types: tuple[str, ...] = MODEL_TYPES) -> list[str]:
    """The checks LM-Cocktail asserts, with messages: a list of models, a known model_type, one weight per model,
    and weights whose sum is at most 1.001 (the reference's only bound; a smaller sum is used as given, with a
    warning). Returns the model list."""
    if isinstance(model_names_or_paths, str) or not isinstance(model_names_or_paths, (list, tuple)) or not model_names_or_paths:
        raise CocktailArgumentError(f"model_names_or_paths must be a non-empty list of model names or folders, "
                                    f"got {model_names_or_paths!r}")
    if model_type not in valid_types:
        raise CocktailArgumentError(f"unknown model_type {model_type!r}; valid: {', '.join(valid_types)}")
    if weights is None:
        return list(model_names_or_paths)
    if isinstance(weights, str) or not isinstance(weights, (list, tuple)):
        raise CocktailArgumentError(f"weights must be a list of numbers, got {weights!r}")
    if len(weights) != len(model_names_or_paths):
        raise CocktailArgumentError(f"{len(weights)} weights for {len(model_names_or_paths)} models; give one weight per model")
    bad = [i for i, w in enumerate(weights) if isinstance(w, bool) or not isinstance(w, (int, float))]
    if bad:
        raise CocktailArgumentError(f"weights[{bad[0]}] = {weights[bad[0]]!r} is not a number")
    total = sum(weights)
    if total - 1 > 1e-3:
        raise CocktailArgumentError(f"the weights sum to {total:g}; they must sum to 1 (at most 1.001): {list(weights)}")
    if total < 1 - 1e-3:
        logger.warning("the weights sum to %g, not 1; they are used as given (LM-Cocktail does not normalise them)", total)
    return list(model_names_or_paths)


def _merge_and_save(names: list[str], model_type: str, weights: list[float], output_path: str | None):
    from bgekit.cocktail.params import check_compatible, inspect_model, weighted_sum
    from bgekit.cocktail.saving import build_model, save_merged

    models = [inspect_model(n, model_type) for n in names]
    check_compatible(models)
    merged = weighted_sum(models, [float(w) for w in weights])
    for name, w in zip(names, weights):
        logger.info("weight of %s: %s", name, w)
    model = build_model(models[0], merged)
    if output_path is not None:
        save_merged(model, models, [float(w) for w in weights], model_type, output_path)
    return model


def mix_models(model_names_or_paths: list[str], model_type: str, weights: list[float], output_path: str | None = None):
    """Merge models with given weights: ``sum_i weights[i] * theta_i`` for every tensor, in float32.

    Tensors are read one model at a time (streamed from safetensors), so memory holds the running sum and one
    tensor (or one model, for checkpoints that are not plain safetensors) at a time.

    Args:
        model_names_or_paths: models of one architecture; the first gives the config, tokenizer and model kind.
        model_type: "encoder" (embedders), "decoder" (LLMs) or "reranker" (cross-encoders).
        weights: one weight per model; they should sum to 1.
        output_path: save the merged model here (transformers layout, the first model's tokenizer, a
            sentence-transformers layout for embedders, and bgekit's spec file).

    Returns:
        The merged transformers model (the first model's class), in eval mode.

    Raises:
        CocktailArgumentError: the checks LM-Cocktail asserts (see :func:`check_arguments`).
        MergeMismatch: the models differ in architecture, tensors or shapes (model and tensor named).

    Example:
        >>> from bgekit.cocktail import mix_models
        >>> model = mix_models(["BAAI/bge-base-en-v1.5", "my-finetuned-bge"], "encoder", [0.5, 0.5],
        ...                    output_path="merged")  # doctest: +SKIP
    """
    names = check_arguments(model_names_or_paths, model_type, weights)
    return _merge_and_save(names, model_type, weights, output_path)


def mix_models_by_layers(model_names_or_paths: list[str], model_type: str, weights: list[float],
                         output_path: str | None = None):
    """:func:`mix_models` for models too large to hold several times in memory. bgekit's merge always streams
    tensor by tensor, so this is the same merge (LM-Cocktail's by-layers variant gives bit-identical results);
    unlike the reference, it also merges rerankers."""
    names = check_arguments(model_names_or_paths, model_type, weights)
    return _merge_and_save(names, model_type, weights, output_path)


def mix_models_with_data(model_names_or_paths: list[str], model_type: str, example_ata: Any = _MISSING,
                         temperature: float = 5.0, batch_size: int = 2, max_input_length: int = 2048,
                         neg_number: int = 7, output_path: str | None = None, *, example_data: Any = _MISSING):
    """Merge models with weights ``softmax(-loss_i / temperature)`` from each model's loss on a few examples.

    Args:
        model_names_or_paths: candidate models of one architecture (the first gives config and tokenizer).
        model_type: "encoder" (examples ``{"query", "pos": [...], "neg": [...]}``) or "decoder"
            (``{"input", "output"}``).
        example_ata / example_data: the examples (LM-Cocktail 0.0.4 spells the parameter ``example_ata``;
            either name is accepted, not both).
        temperature: softmax temperature (5.0, as the reference's code; its docstring says 3.0).
        batch_size: examples per batch for the loss.
        max_input_length: tokens per text (at most the model's position limit).
        neg_number: negatives sampled per query (encoder); every example needs at least this many.
        output_path: save the merged model here (see :func:`mix_models`).

    Returns:
        The merged transformers model; ``model.cocktail_weights`` and ``model.cocktail_losses`` hold the weights
        and per-model losses.
    """
    if example_ata is not _MISSING and example_data is not _MISSING:
        raise TypeError("mix_models_with_data() got both example_ata and example_data; pass the examples once")
    examples = example_data if example_ata is _MISSING else example_ata
    if examples is _MISSING:
        raise TypeError("mix_models_with_data() missing required argument: 'example_data' (or 'example_ata')")
    names = check_arguments(model_names_or_paths, model_type, None, DATA_MODEL_TYPES)
    _check_settings(temperature, batch_size, max_input_length, neg_number)
    from bgekit.cocktail.losses import check_examples

    examples = check_examples(examples, model_type, neg_number)
    weights, losses = compute_weights(names, model_type, examples, temperature, batch_size, max_input_length, neg_number)
    model = _merge_and_save(names, model_type, weights, output_path)
    model.cocktail_weights, model.cocktail_losses = weights, losses
    return model


def _check_settings(temperature: Any, batch_size: Any, max_input_length: Any, neg_number: Any) -> None:
    for name, value in (("batch_size", batch_size), ("max_input_length", max_input_length), ("neg_number", neg_number)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "neg_number" else 1):
            raise UsageError(f"{name} must be a {'non-negative' if name == 'neg_number' else 'positive'} integer, got {value!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise UsageError(f"temperature must be a positive number, got {temperature!r}")


def compute_weights(names: list[str], model_type: str, examples: list[dict], temperature: float = 5.0,
                    batch_size: int = 2, max_input_length: int = 2048, neg_number: int = 7) -> tuple[list[float], list[float]]:
    """(weights, losses): each model's loss on ``examples`` (loaded into the first model's architecture one after
    another) and ``softmax(-loss / temperature)``. Runs on CPU."""
    from bgekit import backends
    from bgekit.cocktail import losses as L
    from bgekit.cocktail.params import check_compatible, inspect_model, load_into, load_whole
    from bgekit.cocktail.saving import merged_spec

    models = [inspect_model(n, model_type) for n in names]
    check_compatible(models)
    first = models[0]
    tokenizer = backends.load_tokenizer(first.path)
    limit = backends.position_limit(first.config.to_dict())
    max_length = min(max_input_length, limit) if limit else max_input_length
    if model_type == "encoder":
        pooling = merged_spec(first, "encoder").pooling or "cls"  # the reference always pools CLS (docs/compat.md)
        data = L.embedder_batches(tokenizer, examples, batch_size, max_length, neg_number)
        loss_fn = functools.partial(L.embedder_loss, pooling=pooling)
    else:
        data, loss_fn = L.llm_batches(tokenizer, L.llm_rows(tokenizer, examples, max_length), batch_size), L.llm_loss
    model = load_whole(first)
    losses = []
    for m in models:
        if m is not first:
            load_into(model, m)
        losses.append(loss_fn(model, data))
    weights = L.softmax_weights(losses, temperature)
    logger.info("losses %s -> weights %s", losses, weights)
    return weights, losses
