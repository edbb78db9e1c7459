"""What every FlagEmbedding-named embedder class shares: the mapping of its arguments onto the native API."""
from __future__ import annotations

from typing import Any


def native_kwargs(flag: dict[str, Any]) -> dict[str, Any]:
    """Map a FlagEmbedding-style constructor's arguments (its ``locals()``) to :class:`Embedder` arguments.

    The one place where FlagEmbedding's names (``normalize_embeddings``, ``query_instruction_for_retrieval``...)
    meet the native ones; every compat embedder class calls it.
    """
    return dict(
        pooling=flag["pooling_method"],
        normalize=flag["normalize_embeddings"],
        query_instruction=flag["query_instruction_for_retrieval"],
        query_instruction_format=flag["query_instruction_format"].replace("\\n", "\n"),
        passage_instruction=flag["passage_instruction_for_retrieval"],
        passage_instruction_format=flag["passage_instruction_format"],
        devices=flag["devices"],
        use_fp16=flag["use_fp16"],
        use_bf16=flag["use_bf16"],
        batch_size=flag["batch_size"],
        query_max_length=flag["query_max_length"],
        passage_max_length=flag["passage_max_length"],
        truncate_dim=flag["truncate_dim"],
        convert_to_numpy=flag["convert_to_numpy"],
        trust_remote_code=flag["trust_remote_code"],
        cache_dir=flag["cache_dir"],
    )
