"""The examples' hub names mapped to the golden fixtures of the same architecture, for the tests that run
FlagEmbedding's example scripts and README code (tests/test_compat_examples.py, tests/test_compat_readme.py)."""
from __future__ import annotations

from pathlib import Path

from golden import GOLDEN
from remote_toy import write_toy

TOY = "remote-code pseudo-MoE toy (tests/remote_toy.py)"
# hub name -> golden fixture of the same architecture
HUB = {
    "BAAI/bge-small-en-v1.5": "bert-embedder",
    "BAAI/bge-base-en-v1.5": "bert-embedder",
    "BAAI/bge-large-zh-v1.5": "bert-embedder",
    "BAAI/bge-m3": "m3",
    "BAAI/bge-multilingual-gemma2": "decoder-embedder",
    "BAAI/bge-en-icl": "decoder-embedder",
    "geevec-ai/geevec-embeddings-1.0-lite": TOY,
    "BAAI/bge-reranker-large": "xlmr-reranker",
    "BAAI/bge-reranker-v2-m3": "xlmr-reranker",
    "BAAI/bge-reranker-v2-gemma": "llm-reranker",
    "BAAI/bge-reranker-v2-minicpm-layerwise": "layerwise-reranker",
    "BAAI/bge-reranker-v2.5-gemma2-lightweight": "lightweight-reranker",
}
# layer numbers of the real 40-layer models -> layers of the tiny fixtures (3 and 4 layers)
LAYERS = {"layerwise-reranker": {28: 2}, "lightweight-reranker": {28: 3, 24: 2, 40: 4}}


def cpu(devices):
    """The examples' CUDA devices as CPU devices."""
    if isinstance(devices, list):
        return [cpu(d) for d in devices]
    return "cpu" if str(devices).startswith("cuda") else devices


def make_hub(root: Path):
    """``hub(name, like=None)``: a folder under ``root`` called like the hub name holding the fixture (``like``: a
    hub name whose fixture to use, for the docs' "your_model_name_or_path")."""

    def path(name: str, like: str | None = None) -> str:
        fixture = HUB[like or name]
        target = root / fixture.split(" ")[0] / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if fixture == TOY:
                write_toy(target, GOLDEN / "models" / "decoder-embedder", "DomainByForward")
            else:
                target.symlink_to(GOLDEN / "models" / fixture, target_is_directory=True)
        return str(target)

    return path


def layers(hub_name: str, values: list[int]) -> list[int]:
    return [LAYERS[HUB[hub_name]][v] for v in values]
