"""Beyond one machine: corpus encoding on a Ray cluster, written as embedding shards.

- :func:`~bgekit.distributed.ray_encode.encode_to_shards`: encode a .jsonl / .parquet corpus with a pool of Ray
  actors (``pip install 'bgekit[ray]'``); the output equals a single-process encode, in corpus order.
- :func:`~bgekit.distributed.shards.read_shards`: open a complete shard folder (.npy + JSON, no pickle).

Ray is imported only when a Ray function runs: ``import bgekit.distributed`` stays light.
"""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "encode_to_shards": "bgekit.distributed.ray_encode",
    "EncodeJobError": "bgekit.distributed.ray_encode",
    "read_shards": "bgekit.distributed.shards",
    "ShardSet": "bgekit.distributed.shards",
    "ShardWriter": "bgekit.distributed.shards",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.distributed", _LAZY, globals())
