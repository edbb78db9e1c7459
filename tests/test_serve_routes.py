"""The routes added for real clients, in-process on the tiny BERT embedder and cross-encoder: TEI's POST /,
/similarity, /predict, /decode, /embed_all, left truncation, token-id inputs, /info; OpenAI's /v1/models, model
aliases, hub names, any-name mode, truncation by default with usage counting used tokens, strict mode; Cohere v2
rerank (max_tokens_per_doc) and embed. Every value equals the library's own output."""
from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from golden import GOLDEN
from bgekit.reranker import Reranker
from bgekit.reranker_inputs import sigmoid
from bgekit.serve import ServeConfig, create_app

pytestmark = pytest.mark.usefixtures("one_thread")
BERT = str(GOLDEN / "models" / "bert-embedder")
RERANKER = str(GOLDEN / "models" / "bert-reranker")
LONG = ("the giant panda eats bamboo in the misty mountains of sichuan; insulin regulates blood sugar in people "
        "and animals; paris is the capital of france and lies on the seine river in europe")
ATOL = 1e-5


@pytest.fixture(scope="module")
def reranker():
    return Reranker(RERANKER, devices="cpu")


@pytest.fixture(scope="module")
def client(bert, reranker):
    config = ServeConfig(max_input_tokens=16, served_model_names=("emb-alias",), workers=2)
    with TestClient(create_app(embedder=bert, reranker=reranker, config=config)) as c:
        yield c


def test_openai_truncates_by_default_and_counts_used_tokens(client, bert):
    r = client.post("/v1/embeddings", json={"input": [LONG, "hi"], "model": "emb-alias", "encoding_format": "base64"})
    assert r.status_code == 200 and r.json()["model"] == "emb-alias"
    got = [np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in r.json()["data"]]
    np.testing.assert_allclose(got, bert.encode([LONG, "hi"], max_length=16), atol=ATOL)
    assert r.json()["usage"]["prompt_tokens"] == 16 + len(bert.tokenizer("hi")["input_ids"])
    r = client.post("/v1/embeddings", json={"input": LONG, "truncate": False})
    assert r.status_code == 400 and r.json()["error"]["code"] == "input_too_long"
    with TestClient(create_app(embedder=bert, config=ServeConfig(max_input_tokens=16, strict_length=True))) as strict:
        r = strict.post("/v1/embeddings", json={"input": ["ok", LONG]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "input[1]"


def test_model_names_aliases_hub_names_and_any(client, bert):
    names = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert names == [BERT, RERANKER, "emb-alias"]
    for name in (BERT, "bert-embedder", "emb-alias", "some-org/bert-embedder"):
        assert client.post("/v1/embeddings", json={"input": "x", "model": name}).status_code == 200, name
    assert client.get("/v1/models/some-org/bert-embedder").json()["id"] == "some-org/bert-embedder"
    assert client.get("/v1/models/text-embedding-ada-002").status_code == 404
    r = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-ada-002"})
    assert r.status_code == 404 and "--accept-any-model" in r.json()["error"]["message"]
    with TestClient(create_app(embedder=bert, config=ServeConfig(accept_any_model=True))) as any_name:
        assert any_name.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-ada-002"}).status_code == 200


def test_token_id_inputs_equal_text_inputs(client, bert):
    texts = ["pandas eat bamboo", "hello there"]
    ids = bert.tokenizer(texts)["input_ids"]
    one = client.post("/v1/embeddings", json={"input": ids[0]}).json()["data"]
    many = client.post("/embed", json={"inputs": ids}).json()
    want = bert.encode(texts, max_length=16)
    np.testing.assert_allclose(one[0]["embedding"], want[0], atol=ATOL)
    np.testing.assert_allclose(many, want, atol=ATOL)
    assert client.post("/decode", json={"ids": ids}).json() == [bert.tokenizer.decode(i, skip_special_tokens=True)
                                                                   for i in ids]


def test_tei_truncation_both_ways_and_413_without_it(client, bert):
    assert client.post("/embed", json={"inputs": LONG}).status_code == 413
    for direction in ("Right", "Left"):
        got = client.post("/embed", json={"inputs": LONG, "truncate": True, "truncation_direction": direction}).json()
        bert.tokenizer.truncation_side = direction.lower()
        try:
            want = bert.encode(LONG, max_length=16)
        finally:
            bert.tokenizer.truncation_side = "right"
        np.testing.assert_allclose(got[0], want, atol=ATOL)
    right = client.post("/embed", json={"inputs": LONG, "truncate": True}).json()[0]
    assert np.abs(np.asarray(right) - np.asarray(got[0])).max() > 1e-3  # Left really kept the other end


def test_tei_root_similarity_embed_all_and_info(client, bert):
    vec = client.post("/", json={"inputs": "pandas eat bamboo", "parameters": {}}).json()
    np.testing.assert_allclose(vec[0], bert.encode("pandas eat bamboo", max_length=16), atol=ATOL)
    body = {"inputs": {"source_sentence": "pandas", "sentences": ["bamboo", "Paris"]}}
    sims = client.post("/", json=body).json()
    assert sims == client.post("/similarity", json=body).json()
    e = bert.encode(["pandas", "bamboo", "Paris"], max_length=16)
    np.testing.assert_allclose(sims, e[1:] @ e[0], atol=ATOL)
    states = client.post("/embed_all", json={"inputs": ["pandas eat bamboo"]}).json()
    assert np.asarray(states).shape == (1, len(bert.tokenizer("pandas eat bamboo")["input_ids"]), bert.model.config.hidden_size)
    info = client.get("/info").json()
    assert info["model_type"] == {"embedding": {"pooling": bert.pooling_method}} and info["max_input_length"] == 16
    assert {"model_id", "model_dtype", "max_batch_tokens", "max_client_batch_size", "auto_truncate", "version"} <= set(info)


def test_tei_predict_scores_pairs(client, reranker):
    pairs = [["what do pandas eat", "bamboo"], ["what do pandas eat", "Paris is in France"]]
    raw = reranker.score([tuple(p) for p in pairs], max_length=16)
    one = client.post("/predict", json={"inputs": pairs[0]}).json()
    assert one[0]["score"] == pytest.approx(sigmoid(raw)[0], abs=ATOL) and one[0]["label"]
    both = client.post("/predict", json={"inputs": pairs, "raw_scores": True}).json()
    assert [b[0]["score"] for b in both] == pytest.approx(raw, abs=ATOL)


def test_cohere_v2_rerank_and_embed(client, reranker, bert):
    docs = ["bamboo is what pandas eat all day long in the forest", "Paris is in France"]
    r = client.post("/v2/rerank", json={"model": "bert-reranker", "query": "pandas", "documents": docs,
                                         "max_tokens_per_doc": 2}).json()
    offsets = [reranker.tokenizer(d, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"] for d in docs]
    cut = [d[: o[1][1]] for d, o in zip(docs, offsets)]  # each document's first two tokens
    assert len(reranker.tokenizer(cut[0], add_special_tokens=False)["input_ids"]) == 2
    want = sigmoid(reranker.score([("pandas", d) for d in cut], max_length=16))
    assert sorted((x["index"], round(x["relevance_score"], 5)) for x in r["results"]) == [
        (i, round(s, 5)) for i, s in enumerate(want)]
    assert "document" not in r["results"][0]
    e = client.post("/v2/embed", json={"model": "bert-embedder", "texts": ["pandas", LONG], "truncate": "START",
                                        "embedding_types": ["float", "base64"], "input_type": "search_document"}).json()
    bert.tokenizer.truncation_side = "left"
    try:
        want = bert.encode(["pandas", LONG], max_length=16)
    finally:
        bert.tokenizer.truncation_side = "right"
    np.testing.assert_allclose(e["embeddings"]["float"], want, atol=ATOL)
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(e["embeddings"]["base64"][1]), "<f4"), want[1], atol=ATOL)


def test_api_docs_are_served_without_the_key_and_data_routes_still_need_it(bert):
    app = create_app(embedder=bert, config=ServeConfig(api_key="s3cret"))
    with TestClient(app) as c:
        spec = c.get("/openapi.json")
        assert spec.status_code == 200 and "/v1/embeddings" in spec.json()["paths"]
        assert c.get("/docs").status_code == 200
        assert c.post("/v1/embeddings", json={"input": "x"}).status_code == 401
