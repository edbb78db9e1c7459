"""The server says when it cannot serve, and no client can hold it: /health is 503 with the reason for a model
that cannot run (CUDA asked for, none present) and for an index rebuilt with another model under the running
server (and /search names that problem, not the request); a client that disconnects loses its queued work; a
body that never arrives gets 408, and headers that never arrive get the connection closed."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from golden import GOLDEN
from bgekit.encoder import Embedder
from bgekit.index.store import build_index
from bgekit.index.search import Searcher
from bgekit.index.store import open_index
from bgekit.serve import ServeConfig, create_app
from bgekit.serve.runner import bind, run

pytestmark = pytest.mark.usefixtures("one_thread")
BERT = str(GOLDEN / "models" / "bert-embedder")
OTHER = str(GOLDEN / "models" / "bert-embedder-ft1")
DOCS = [{"id": f"d{i}", "text": t} for i, t in enumerate(["pandas eat bamboo", "Paris is in France", "insulin"])]


def test_a_model_that_cannot_run_is_unhealthy_with_the_reason(bert):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    broken = Embedder(BERT, devices="cpu")
    broken.target_devices = ["cuda:0"]  # what `--device cuda` gave on a machine without CUDA
    app = create_app(embedder=broken)
    problems = app.state.engine.probe()
    assert "embedder" in problems and "cannot run" in problems["embedder"]
    with TestClient(app) as c:
        health = c.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert any("CUDA" in p or "cuda" in p for p in health.json()["problems"]), health.json()
        r = c.post("/v1/embeddings", json={"input": "x"})
        assert r.status_code == 500 and "the model failed" in r.json()["error"]["message"]
    healthy = create_app(embedder=bert)
    assert healthy.state.engine.probe() == {}
    with TestClient(healthy) as c:
        assert c.get("/health").status_code == 200 and c.get("/health").json()["problems"] == []


def test_an_index_rebuilt_with_another_model_is_unhealthy_and_search_says_why(tmp_path, bert):
    path = str(tmp_path / "ix")
    build_index(path, bert, DOCS, show_progress=False)
    app = create_app(searcher=Searcher(open_index(path), bert))
    assert app.state.engine.probe() == {}
    with TestClient(app) as c:
        assert c.post("/search", json={"query": "bamboo", "top_k": 1}).json()["hits"][0]["id"] == "d0"
        build_index(path, Embedder(OTHER, devices="cpu"), DOCS, show_progress=False, overwrite=True)
        r = c.post("/search", json={"query": "bamboo", "top_k": 1})
        err = r.json()["error"]
        assert r.status_code == 503 and err["code"] == "index_model_mismatch" and err["param"] is None, r.text
        assert "cannot be searched with this" in err["message"] and "mode" not in err["message"].replace("model", "")
        health = c.get("/health")
        assert health.status_code == 503 and "cannot be searched" in health.json()["problems"][0]
        build_index(path, bert, DOCS, show_progress=False, overwrite=True)  # fixed: healthy again
        assert c.get("/health").status_code == 200
        assert c.post("/search", json={"query": "bamboo", "top_k": 1}).status_code == 200


@pytest.fixture(scope="module")
def live(bert):
    """A real uvicorn server on 127.0.0.1 with short timeouts and a slow, recording model."""
    app = create_app(embedder=bert, config=ServeConfig(body_timeout_s=0.5, max_wait_ms=0))
    seen, real = [], app.state.batcher.run

    def slow(key, items):
        seen.append(list(items))
        time.sleep(0.4)
        return real(key, items)

    app.state.batcher.run = slow
    sock = bind("127.0.0.1", 0)
    ready = threading.Event()
    threading.Thread(target=run, args=(app, sock), kwargs={"header_timeout": 0.5, "on_ready": ready.set},
                     daemon=True).start()
    assert ready.wait(30)
    yield sock.getsockname()[1], seen, app


def post(port: int, text: str) -> socket.socket:
    body = ('{"input": "%s"}' % text).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return s


def test_work_of_a_client_that_disconnects_is_dropped(live):
    import httpx

    port, seen, app = live
    busy = post(port, "first")  # occupies the model for 0.4 s
    time.sleep(0.1)
    gone = post(port, "abandoned")
    time.sleep(0.05)
    gone.close()
    time.sleep(0.1)
    assert app.state.batcher.queued_inputs == 0
    r = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": "later"}, timeout=10)
    assert r.status_code == 200
    busy.close()
    assert ["abandoned"] not in seen and ["first"] in seen and ["later"] in seen
    assert "bgekit_cancelled_inputs_total 1" in app.state.metrics.render()


def test_a_body_that_never_arrives_gets_408_and_the_connection_closes(live):
    port = live[0]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100\r\n\r\n{\"input\": ")
    s.settimeout(5)
    start, data = time.time(), b""
    while chunk := s.recv(4096):
        data += chunk
    assert data.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in data
    assert time.time() - start < 3
    s.close()


def test_headers_that_never_arrive_get_the_connection_closed(live):
    port = live[0]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: t\r\n")  # and nothing more
    s.settimeout(5)
    start = time.time()
    assert s.recv(4096) == b"" and time.time() - start < 3  # closed by the server
    s.close()
    idle = socket.create_connection(("127.0.0.1", port))  # a connection that never sends anything
    idle.settimeout(5)
    assert idle.recv(4096) == b""
    idle.close()
