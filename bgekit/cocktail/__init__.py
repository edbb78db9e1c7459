"""LM-Cocktail model merging: a weighted average of the parameters of models that share one architecture (a
fine-tuned model and its base, or several fine-tunes), keeping a fine-tuned model's general ability.

Same functions and signatures as FlagEmbedding's ``LM_Cocktail`` (0.0.4): :func:`mix_models`,
:func:`mix_models_with_data` (``example_ata`` or ``example_data``) and :func:`mix_models_by_layers`, for
"encoder" (embedders), "decoder" (LLMs) and "reranker" (cross-encoders). On the command line: ``bgekit merge``.

Importing this package loads neither torch nor transformers.

Example:
    >>> from bgekit.cocktail import mix_models
    >>> mix_models(["all-MiniLM-L6-v2", "out/embedder"], "encoder", [0.5, 0.5], output_path="merged")  # doctest: +SKIP
"""
from __future__ import annotations

from bgekit.cocktail.mixing import (CocktailArgumentError, compute_weights, mix_models, mix_models_by_layers,
                                    mix_models_with_data)
from bgekit.cocktail.params import MergeMismatch

__all__ = ["mix_models", "mix_models_with_data", "mix_models_by_layers", "compute_weights", "CocktailArgumentError",
           "MergeMismatch"]
