"""The HTTP server on the tiny fixtures, in-process (FastAPI TestClient / httpx ASGI transport, no sockets):
every route's shape and values equal the library's direct output, errors are 4xx JSON naming the field and the
server keeps serving, limits, API key, 503 on a full queue, batching of concurrent requests, metrics, the page."""
from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from golden import GOLDEN
from bgekit.cli.embed import DEFAULT_SAMPLE
from bgekit.index.documents import read_corpus
from bgekit.index.search import Searcher
from bgekit.index.store import build_index
from bgekit.m3 import M3Embedder
from bgekit.reranker import Reranker
from bgekit.reranker_inputs import sigmoid
from bgekit.serve import ServeConfig, create_app

M3 = str(GOLDEN / "models" / "m3")
RERANKER = str(GOLDEN / "models" / "bert-reranker")
TEXTS = ["The giant panda eats bamboo.", "Paris is in France.", "hi"]


@pytest.fixture(scope="module")
def reranker():
    return Reranker(RERANKER, devices="cpu")


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, m3, reranker):
    docs = read_corpus(DEFAULT_SAMPLE)
    for i, meta in enumerate(docs.metadata):
        meta["lang"] = "en" if i % 2 else "fr"
    store = build_index(str(tmp_path_factory.mktemp("ix") / "ix"), m3, docs, show_progress=False)
    return Searcher(store, m3, reranker)


@pytest.fixture(scope="module")
def client(searcher):
    app = create_app(searcher=searcher, config=ServeConfig(model_name="bge-m3-tiny", reranker_name="rr-tiny",
                                                           max_client_batch_size=8, max_input_tokens=64))
    with TestClient(app) as c:
        yield c


def error_of(response):
    body = response.json()
    return body["error"] if isinstance(body["error"], dict) else {"message": body["error"], "type": body["error_type"]}


def test_openai_embeddings_equal_the_library(client, m3):
    r = client.post("/v1/embeddings", json={"input": TEXTS, "model": "bge-m3-tiny"})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["model"] == "bge-m3-tiny" and [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" for d in body["data"])
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], m3.encode(TEXTS, max_length=64), atol=1e-6)
    n_tokens = sum(len(x) for x in m3.tokenizer(TEXTS)["input_ids"])
    assert body["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}
    b64 = client.post("/v1/embeddings", json={"input": "hi", "encoding_format": "base64", "model": "m3"}).json()
    vec = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vec, m3.encode("hi"), atol=1e-6)
    q = client.post("/v1/embeddings", json={"input": ["panda"], "input_type": "query", "dimensions": 8}).json()
    direct = M3Embedder(M3, devices="cpu", truncate_dim=8).encode_queries(["panda"], max_length=64)
    np.testing.assert_allclose(q["data"][0]["embedding"], direct[0], atol=1e-6)


def test_tei_embed_sparse_tokenize(client, m3):
    emb = client.post("/embed", json={"inputs": TEXTS, "normalize": False}).json()
    raw = M3Embedder(M3, devices="cpu", normalize=False).encode(TEXTS, max_length=64)
    np.testing.assert_allclose(emb, raw, atol=1e-5)
    assert len(client.post("/embed", json={"inputs": "one"}).json()) == 1
    sparse = client.post("/embed_sparse", json={"inputs": TEXTS[:2]}).json()
    direct = m3.encode_multi(TEXTS[:2], role="text", outputs=("sparse",), max_length=64).sparse
    for got, want in zip(sparse, direct):
        assert [t["index"] for t in got] == want.indices.tolist()
        np.testing.assert_allclose([t["value"] for t in got], want.values, rtol=1e-5)
    toks = client.post("/tokenize", json={"inputs": "hi there"}).json()
    ids = m3.tokenizer("hi there")["input_ids"]
    assert [t["id"] for t in toks[0]] == ids
    assert toks[0][0]["special"] and toks[0][0]["start"] is None and not toks[0][1]["special"]
    assert "".join(t["text"] for t in toks[0] if not t["special"]).replace(" ", "") == "hithere"
    assert "hi there"[toks[0][1]["start"]:toks[0][1]["stop"]] == toks[0][1]["text"]


def test_rerank_routes_sorted_and_sigmoid_unless_raw(client, reranker):
    docs = ["Paris is the capital of France.", "Pandas eat bamboo.", "Hi"]
    raw = reranker.score([("capital of France", d) for d in docs], max_length=64)
    order = list(np.argsort(-np.asarray(raw), kind="stable"))
    tei = client.post("/rerank", json={"query": "capital of France", "texts": docs, "return_text": True}).json()
    assert [x["index"] for x in tei] == order and [x["text"] for x in tei] == [docs[i] for i in order]
    assert [x["score"] for x in tei] == pytest.approx([sigmoid(raw)[i] for i in order], abs=1e-6)
    tei_raw = client.post("/rerank", json={"query": "capital of France", "texts": docs, "raw_scores": True}).json()
    assert [x["score"] for x in tei_raw] == pytest.approx([raw[i] for i in order], abs=1e-5)
    assert "text" not in tei_raw[0]
    cohere = client.post("/v1/rerank", json={"query": "capital of France", "model": "rr-tiny", "top_n": 2,
                                              "documents": [docs[0], {"text": docs[1]}, docs[2]]}).json()
    assert [x["index"] for x in cohere["results"]] == order[:2]
    assert cohere["results"][0]["document"] == {"text": docs[order[0]]} and cohere["model"] == "rr-tiny"
    assert cohere["results"][0]["relevance_score"] == pytest.approx(sigmoid(raw)[order[0]], abs=1e-6)


def test_search_route_equals_the_searcher(client, searcher):
    body = client.post("/search", json={"query": "giant panda", "top_k": 3, "mode": "hybrid", "rerank": False}).json()
    direct = searcher.search("giant panda", top_k=3, mode="hybrid", rerank=False)
    assert [h["id"] for h in body["hits"]] == [h.id for h in direct.hits]
    assert [h["scores"] for h in body["hits"]] == [pytest.approx(h.scores) for h in direct.hits]
    assert body["stages"] == ["dense", "sparse", "fused"]
    reranked = client.post("/search", json={"query": "giant panda", "top_k": 2, "filter": {"lang": "en"}}).json()
    assert all(h["metadata"]["lang"] == "en" and "rerank" in h["scores"] for h in reranked["hits"])
    many = client.post("/search", json={"query": ["a", "b"], "top_k": 1}).json()
    assert [r["query"] for r in many["results"]] == ["a", "b"]


@pytest.mark.parametrize("route, body, status, param", [
    # OpenAI- and Cohere-shaped routes answer 400 for every invalid request, as those APIs do
    ("/v1/embeddings", {"input": []}, 400, "input"),
    ("/v1/embeddings", {"input": ["ok", 3]}, 400, "input[1]"),
    ("/v1/embeddings", {"input": 5}, 400, "input"),
    ("/v1/embeddings", {"input": [["a", "b"]]}, 400, "input[0]"),
    ("/v1/embeddings", {"input": ["ok", [1, 2]]}, 400, "input"),
    ("/v1/embeddings", {"input": [5, 10 ** 9]}, 400, "input[1]"),
    ("/v1/embeddings", {"input": "x", "model": "gpt-4"}, 404, "model"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "hex"}, 400, "encoding_format"),
    ("/v1/embeddings", {"input": "x", "dimensions": 0}, 400, "dimensions"),
    ("/v1/embeddings", {"input": ["x"] * 9}, 400, "input"),
    ("/v1/embeddings", {"input": ["ok", "word " * 100], "truncate": False}, 400, "input[1]"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "other"}, 404, "model"),
    ("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, 400, "documents[0]"),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents"),
    ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, 400, "max_tokens_per_doc"),
    ("/v2/embed", {"texts": ["a"], "embedding_types": ["int8"]}, 400, "embedding_types[0]"),
    ("/v2/embed", {"texts": ["a", "word " * 100], "truncate": "NONE"}, 400, "texts[1]"),
    # TEI's routes keep TEI's statuses: 422 invalid, 413 too many or too long
    ("/embed", {"inputs": "x", "normalize": "yes"}, 422, "normalize"),
    ("/embed", {"inputs": "x", "truncation_direction": "Up"}, 422, "truncation_direction"),
    ("/embed", {"inputs": ["x"] * 9}, 413, "inputs"),
    ("/embed", {"inputs": ["ok", "word " * 100]}, 413, "inputs[1]"),
    ("/embed", {"inputs": [["a"]]}, 422, "inputs[0]"),
    ("/rerank", {"texts": ["a"]}, 422, "query"),
    ("/predict", {"inputs": "just one text"}, 422, "inputs"),
    ("/decode", {"ids": ["a"]}, 422, "ids"),
    ("/similarity", {"inputs": {"source_sentence": "a"}}, 422, "inputs.sentences"),
    ("/search", {"query": 3}, 400, "query"),
    ("/search", {"query": "q", "weights": {"dense": "high"}}, 400, "weights"),
    ("/search", {"query": "q", "top_k": 0}, 400, "top_k"),
    ("/search", {"query": "q", "mode": "bm25"}, 400, "mode"),
    ("/search", {"query": "q", "mdoe": "dense"}, 400, "mdoe"),
    ("/search", {"query": "q", "filter": {"lang": {"$in": ["en"]}}}, 400, "filter"),
])
def test_bad_input_is_a_4xx_naming_the_field(client, route, body, status, param):
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    err = error_of(r)
    assert param in err["message"] and err["message"]
    if route in ("/embed", "/rerank", "/predict", "/decode", "/similarity"):
        assert set(r.json()) == {"error", "error_type"}  # TEI's shape
    else:
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"]
    assert client.post("/v1/embeddings", json={"input": "still serving"}).status_code == 200


def test_malformed_bodies_unknown_routes_and_methods(client):
    r = client.post("/v1/embeddings", content=b'{"input": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in error_of(r)["message"] and r.json()["error"]["param"] == "body"
    r = client.post("/embed", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and r.json()["error_type"] and "JSON object" in r.json()["error"]
    r = client.post("/nowhere", json={})
    assert r.status_code == 404 and "no route POST /nowhere" in error_of(r)["message"]
    r = client.get("/v1/embeddings")
    assert r.status_code == 405 and "use POST" in error_of(r)["message"]
    r = client.post("/v1/embeddings", json={"input": "long " * 200, "truncate": True})
    assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == 64


def test_oversized_body_api_key_and_truncate_default(m3):
    app = create_app(embedder=m3, config=ServeConfig(api_key="s3cret", max_body_bytes=500, truncate=True,
                                                     max_input_tokens=16))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200  # public
        r = c.post("/v1/embeddings", json={"input": "x"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and error_of(r)["type"] == "authentication_error"
        assert c.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/metrics").status_code == 401 and c.get("/metrics", headers=auth).status_code == 200
        r = c.post("/v1/embeddings", json={"input": "y" * 600}, headers=auth)
        assert r.status_code == 413 and error_of(r)["param"] == "body"

        def chunks():  # no Content-Length: the size is counted while reading
            yield b'{"input": "'
            yield b"z" * 600
            yield b'"}'

        r = c.post("/v1/embeddings", content=chunks(), headers={**auth, "content-type": "application/json"})
        assert r.status_code == 413 and "larger than 500 bytes" in error_of(r)["message"]
        r = c.post("/v1/embeddings", json={"input": "word " * 50}, headers=auth)  # truncated by default here
        assert r.status_code == 200 and r.json()["usage"]["total_tokens"] == 16
        np.testing.assert_allclose(r.json()["data"][0]["embedding"], m3.encode("word " * 50, max_length=16), atol=1e-6)


def test_server_without_a_reranker_or_index_says_so(m3):
    with TestClient(create_app(embedder=m3)) as c:
        r = c.post("/rerank", json={"query": "q", "texts": ["a"]})
        assert r.status_code == 400 and "--reranker" in r.json()["error"]
        r = c.post("/search", json={"query": "q"})
        assert r.status_code == 400 and "--index-dir" in error_of(r)["message"]
        assert "No index loaded" in c.get("/").text


def test_concurrent_requests_are_batched_and_answered_correctly(m3):
    app = create_app(embedder=m3, config=ServeConfig(max_wait_ms=20))
    words = ["panda", "bamboo", "Paris", "vaccine", "insulin", "Everest", "Python", "wall", "ocean", "tortoise"]
    texts = [" ".join(words[(i * 7 + j * 3) % 10] for j in range(1 + i % 5)) + f" {i}" for i in range(24)]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/v1/embeddings", json={"input": t}) for t in texts))

    responses = asyncio.run(main())
    got = np.array([r.json()["data"][0]["embedding"] for r in responses])
    direct = m3.encode(texts)
    np.testing.assert_allclose(got, direct, atol=1e-5)
    gaps = np.abs(direct[:, None] - direct[None]).max(-1) + np.eye(24)  # (24, 24) distance between texts' vectors
    assert gaps.min() > 1e-3  # distinct inputs, so a mix-up could not pass the 1e-5 check above
    text = app.state.metrics.render()
    calls = int(next(line.split()[-1] for line in text.splitlines() if line.startswith("bgekit_batch_inputs_count")))
    assert calls < 24, text  # coalesced into fewer model calls


def test_full_queue_answers_503_with_retry_after(m3):
    import threading

    release = threading.Event()
    app = create_app(embedder=m3, config=ServeConfig(max_wait_ms=0, max_queue_inputs=2))
    real = app.state.batcher.run

    def slow(key, items):
        release.wait(5)
        return real(key, items)

    app.state.batcher.run = slow

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            tasks = [asyncio.ensure_future(c.post("/v1/embeddings", json={"input": f"t{i}"})) for i in range(6)]
            await asyncio.sleep(0.3)
            release.set()
            return await asyncio.gather(*tasks)

    responses = asyncio.run(main())
    codes = [r.status_code for r in responses]
    # at most one running + two queued are accepted (two when the worker has not started the first yet)
    assert 2 <= codes.count(200) <= 3 and codes.count(200) + codes.count(503) == 6
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and error_of(busy)["type"] == "server_busy"
    assert "queued" in error_of(busy)["message"]


def test_metrics_health_info_and_page(client):
    client.post("/embed", json={"inputs": "hello"})
    text = client.get("/metrics").text
    assert "# TYPE bgekit_requests_total counter" in text
    assert 'bgekit_requests_total{code="200",route="/embed"}' in text
    assert "bgekit_batch_inputs_bucket" in text and "bgekit_request_duration_seconds_count" in text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["index"]["count"] == 12
    assert client.get("/info").json()["max_client_batch_size"] == 8
    page = client.get("/")
    assert page.headers["content-type"].startswith("text/html") and 'id="search-form"' in page.text


def test_bad_server_settings_are_refused(m3):
    with pytest.raises(ValueError, match="max_client_batch_size must be a positive integer"):
        create_app(embedder=m3, config=ServeConfig(max_client_batch_size=0))
    with pytest.raises(ValueError, match="needs an embedder, a reranker or a searcher"):
        create_app()
