"""Embedding cache: keyed by model files (not folder name), settings and data; atomic; damaged entries are misses."""
import json
import os
import shutil

import numpy as np

from bgekit.eval.cache import EmbeddingCache, model_fingerprint


def make_model(folder, weights=b"weights-v1"):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "bert"}, f)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(weights)
    return folder


def test_model_fingerprint_follows_files_not_names(tmp_path):
    a = make_model(str(tmp_path / "model-a"))
    renamed = str(tmp_path / "other-name")
    shutil.copytree(a, renamed)
    assert model_fingerprint(a) == model_fingerprint(renamed)          # renamed copy: same model
    fine_tuned = make_model(str(tmp_path / "model-b"), b"weights-v2")
    assert model_fingerprint(fine_tuned) != model_fingerprint(a)
    before = model_fingerprint(a)
    make_model(a, b"weights-after-finetune-in-place")                  # same folder name, new weights
    assert model_fingerprint(a) != before
    after = model_fingerprint(a)
    os.makedirs(os.path.join(a, ".cache"))
    with open(os.path.join(a, ".cache", "x"), "w") as f:
        f.write("ignored")
    assert model_fingerprint(a) == after                               # a cache folder inside is not the model


def test_key_depends_on_every_part():
    k = EmbeddingCache.key("m", {"max_length": 256}, "data")
    assert k == EmbeddingCache.key("m", {"max_length": 256}, "data")
    assert len({k, EmbeddingCache.key("m2", {"max_length": 256}, "data"), EmbeddingCache.key("m", {"max_length": 128}, "data"),
                EmbeddingCache.key("m", {"max_length": 256}, "data2")}) == 4


def test_save_load_roundtrip_is_exact_and_atomic(tmp_path):
    cache = EmbeddingCache(str(tmp_path / "cache"))
    arrays = {"dense": np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32),
              "sparse_indptr": np.array([0, 2, 3], np.int64)}
    key = cache.key("m", {}, "d")
    assert cache.load(key) is None
    cache.save(key, arrays, meta={"model": "x"})
    back = cache.load(key)
    assert set(back) == set(arrays) and all(np.array_equal(back[n], arrays[n]) for n in arrays)
    assert not [f for f in os.listdir(cache.folder) if f.endswith(".tmp")]
    with open(os.path.join(cache.folder, f"{key}.json")) as f:
        assert json.load(f)["meta"] == {"model": "x"}


def test_incomplete_or_damaged_entries_are_misses(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    key = cache.key("m", {}, "d")
    cache.save(key, {"dense": np.ones((2, 2), np.float32)})
    np.save(os.path.join(str(tmp_path), f"{key}.dense.npy"), np.ones((3, 2), np.float32))  # shape no longer matches
    assert cache.load(key) is None
    os.remove(os.path.join(str(tmp_path), f"{key}.json"))                                  # killed before the manifest
    assert cache.load(key) is None
