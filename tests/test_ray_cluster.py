"""The multi-node form of the Ray encode, on one machine: ``ray start --head``, then ``--ray-address HOST:PORT``.

Slow (a head node starts, then a separate ``bgekit`` process joins it): ``python -m pytest -m slow
tests/test_ray_cluster.py``. The head runs in its own process group, which the test stops as a whole.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ray", reason="could not import ray (pip install 'bgekit[ray]')")

from golden import GOLDEN  # noqa: E402

BERT = str(GOLDEN / "models" / "bert-embedder")
BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    import shutil
    import tempfile

    port = _free_port()
    log = open(tmp_path / "head.log", "w")
    # its own short temp dir (Unix socket paths are limited to ~107 bytes): the machine's /tmp/ray, where
    # `ray start` records "the current cluster" that a plain ray.init() would join, stays untouched
    temp = tempfile.mkdtemp(prefix="bgr")
    proc = subprocess.Popen([os.path.join(BIN, "ray"), "start", "--head", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", f"--temp-dir={temp}", "--block"], stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.time() + 120
        while "will now block forever" not in (tmp_path / "head.log").read_text():
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(1)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the head and every Ray process it started share its group
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_encode_joins_a_running_cluster(head, tmp_path):
    from bgekit.distributed import read_shards
    from bgekit.loading import load_embedder

    texts = ["tortoises live long", "pandas eat bamboo", "", "Paris ist die Hauptstadt Frankreichs."]
    with open(tmp_path / "c.jsonl", "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "HF_HUB_OFFLINE": "1"}  # ray 2.60: HOST:PORT needs the mode
    out = subprocess.run([os.path.join(BIN, "bgekit"), "encode", "c.jsonl", "-o", "emb", "--ray", "--ray-address",
                          head, "--model", BERT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    shards = read_shards(str(tmp_path / "emb"))
    expected = load_embedder(BERT, devices="cpu").encode(texts, show_progress=False)
    assert shards.ids() == ["d0", "d1", "d2", "d3"] and float(np.abs(shards.dense() - expected).max()) <= 1e-6
