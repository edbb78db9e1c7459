"""The GPU path of the Ray encode (one actor per GPU), exercised on a machine without a GPU.

Ray lets a runtime declare logical GPUs: ``ray.init(num_gpus=2)`` on a CPU machine schedules GPU actors exactly as
on a GPU node (one GPU each, ``CUDA_VISIBLE_DEVICES`` set by Ray to the actor's own GPU id), but no CUDA device
exists. So the loader used here records what the actor was asked for (the device string) and what Ray gave it
(``CUDA_VISIBLE_DEVICES``, its GPU ids and resources) to a file, then loads the tiny model **on CPU regardless**:
the model runs on CPU; only the scheduling and the device choice of the GPU path are tested, not CUDA itself.

This module has its own runtime (``ray.init`` once per process at a time: the other Ray test modules start and
stop theirs without GPUs) and reuses tests/test_ray_encode.py's helpers and module-scoped fixtures.
"""
import json
import os
import sys
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="could not import ray (pip install 'bgekit[ray]')")

from bgekit.distributed import encode_to_shards, read_shards  # noqa: E402
from bgekit.distributed.actor import ModelLoader  # noqa: E402
from bgekit.distributed.ray_encode import _resources  # noqa: E402
from bgekit.errors import UsageError  # noqa: E402
from golden import GOLDEN  # noqa: E402
from test_ray_encode import BERT, TOL, _jsonl, bert, texts  # noqa: E402,F401 (module-scoped fixtures reused)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gpu_runtime():
    if not GOLDEN.is_dir():
        pytest.skip("golden fixtures not found (../shared/golden)")
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the loader below, for Ray's workers
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class RecordingLoader:
    """Writes what the actor sees to ``folder``, then loads the tiny BERT on CPU (whatever device was asked)."""

    folder: str

    def __call__(self, device: str):
        seen = {"device": device, "pid": os.getpid(), "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "resources": ray.get_runtime_context().get_assigned_resources()}
        with open(os.path.join(self.folder, f"{uuid.uuid4().hex}.json"), "w", encoding="utf-8") as f:
            json.dump(seen, f)
        return ModelLoader(BERT)("cpu")


def _seen(folder) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.iterdir())]


def test_one_actor_per_gpu_each_asked_for_cuda0_of_its_own_gpu(gpu_runtime, tmp_path, texts, bert):
    assert _resources(gpu_runtime, None, None, None)[:2] == (True, 2)  # default: GPUs -> use them, one actor each
    assert _resources(gpu_runtime, False, None, None) == (False, 1, 1.0)  # CPU actors: one CPU left for reading
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)])
    (tmp_path / "seen").mkdir()
    encode_to_shards(corpus, str(tmp_path / "emb"), RecordingLoader(str(tmp_path / "seen")), batch_size=5,
                     shard_rows=8, show_progress=False)  # use_gpu and concurrency left to their defaults
    seen = _seen(tmp_path / "seen")
    assert len(seen) == 2 and len({s["pid"] for s in seen}) == 2  # two actors, in two processes
    assert [s["device"] for s in seen] == ["cuda:0", "cuda:0"]  # each sees only its own GPU, as device 0
    assert sorted(s["CUDA_VISIBLE_DEVICES"] for s in seen) == ["0", "1"]  # Ray gave them different GPUs
    for s in seen:
        assert s["gpu_ids"] == [s["CUDA_VISIBLE_DEVICES"]]
        assert s["resources"].get("GPU") == 1 and not s["resources"].get("CPU")  # a GPU, no CPU: reading has both
    shards = read_shards(str(tmp_path / "emb"))
    assert shards.ids() == [f"doc-{i}" for i in range(len(texts))]
    expected = np.asarray(bert.encode_corpus(texts, show_progress=False), dtype=np.float32)
    assert float(np.abs(shards.dense() - expected).max()) <= TOL


def test_gpu_options_that_cannot_apply_are_refused_before_any_actor_starts(gpu_runtime, tmp_path):
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}])
    (tmp_path / "seen").mkdir()
    loader = RecordingLoader(str(tmp_path / "seen"))
    with pytest.raises(UsageError, match="cpus_per_actor applies to CPU actors; with GPUs each actor takes one GPU"):
        encode_to_shards(corpus, str(tmp_path / "a"), loader, cpus_per_actor=1, show_progress=False)
    with pytest.raises(UsageError, match=r"concurrency 3 does not fit: the Ray cluster has 2 GPUs \(one per actor\), "
                                         "room for 2 actors"):
        encode_to_shards(corpus, str(tmp_path / "b"), loader, concurrency=3, show_progress=False)
    assert _seen(tmp_path / "seen") == [] and sorted(os.listdir(tmp_path)) == ["c.jsonl", "seen"]


class _NoGpuCluster:
    """What ``_resources`` reads of a Ray module: a cluster of 2 CPUs and no GPU (this module's runtime has 2)."""

    @staticmethod
    def cluster_resources() -> dict:
        return {"CPU": 2.0, "memory": 1e9}


def test_use_gpu_on_a_cluster_without_gpus_is_refused():
    with pytest.raises(UsageError, match="use_gpu=True, but the Ray cluster has no GPUs"):
        _resources(_NoGpuCluster(), True, None, None)
    assert _resources(_NoGpuCluster(), None, None, None) == (False, 1, 1.0)  # default there: CPU actors
