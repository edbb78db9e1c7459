"""The official HTTP clients against a real `bgekit serve` on 127.0.0.1, at their default settings.

One server (all-MiniLM-L6-v2 embedder + the tiny golden cross-encoder) is started as a subprocess on a free
port; each client makes its ordinary calls, and every vector and score equals the library's own ``encode`` /
``score`` output in this process (fp32, 1e-5): openai's ``embeddings.create`` (1, 100 and 2,048 inputs in the
default base64; 1 and 100 in float), ``models.list`` / ``retrieve`` and its error types; LangChain's ``OpenAIEmbeddings`` over 1,500
mixed-length texts, some beyond the model's 256 tokens; cohere's ``ClientV2.rerank`` / ``.embed`` and
``Client.rerank``; huggingface_hub's ``InferenceClient(model=URL).feature_extraction`` and ``sentence_similarity``.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from golden import GOLDEN

pytestmark = pytest.mark.usefixtures("one_thread")
MODEL = "all-MiniLM-L6-v2"
RERANKER = str(GOLDEN / "models" / "bert-reranker")
SCIFACT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scifact", "corpus.jsonl")
ATOL = 1e-5


def corpus(n: int) -> list[dict]:
    if not os.path.isfile(SCIFACT):
        pytest.skip("SciFact data not found (../shared/data/scifact)")
    with open(SCIFACT, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


def short_titles(n: int) -> list[str]:
    """Distinct short texts (the first words of SciFact titles): many inputs, little compute on 2 cores."""
    return [" ".join(d["title"].split()[:2]) + f" {i}" for i, d in enumerate(corpus(n))]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    cmd = [sys.executable, "-m", "bgekit", "serve", "--model", MODEL, "--reranker", RERANKER, "--device", "cpu",
           "--port", "0", "--served-model-name", "text-embedding-3-small"]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            text = log.read_text()
            found = re.search(r"ready on (http://127\.0\.0\.1:\d+)", text)
            if found:
                break
            assert proc.poll() is None, f"bgekit serve exited:\n{text[-3000:]}"
            time.sleep(0.2)
        else:
            pytest.fail(f"bgekit serve did not start in 120 s:\n{log.read_text()[-3000:]}")
        yield found.group(1), log.read_text(), proc, log
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def embedder():
    from bgekit.loading import load_embedder

    return load_embedder(MODEL, devices="cpu")


class Reference:
    """The library's own vectors (``encode``), each text encoded once per module."""

    def __init__(self, model):
        self.model, self.cache = model, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        new = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if new:
            self.cache.update(zip(new, self.model.encode(new, batch_size=32, show_progress=False)))
        return np.stack([self.cache[t] for t in texts])


@pytest.fixture(scope="module")
def reference(embedder):
    return Reference(embedder)


@pytest.fixture(scope="module")
def reranker():
    from bgekit.compat.reranker import FlagAutoReranker

    return FlagAutoReranker.from_finetuned(RERANKER, devices="cpu")


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def test_the_ready_line_names_the_url(server):
    url, stderr = server[:2]
    assert f"bgekit serve: ready on {url} (OpenAI base URL {url}/v1)" in stderr
    assert "problem" not in stderr


def test_openai_client_embeddings_at_default_settings(server, embedder, reference):
    import openai

    client = openai.OpenAI(base_url=server[0] + "/v1", api_key="unused")
    titles = short_titles(2048)
    want = reference(titles)
    # the client's default encoding is base64 (it decodes it); float for 1 and 100 inputs (2,048 more would cost a
    # minute on a busy 2-core machine and test the same JSON path)
    for n, encodings in ((1, ({}, {"encoding_format": "float"})), (100, ({}, {"encoding_format": "float"})), (2048, ({},))):
        for encoding in encodings:
            out = client.embeddings.create(model=MODEL, input=titles[0] if n == 1 else titles[:n], **encoding)
            assert [d.index for d in out.data] == list(range(n))
            np.testing.assert_allclose([d.embedding for d in out.data], want[:n], atol=ATOL)
    assert out.usage.prompt_tokens == sum(len(ids) for ids in embedder.tokenizer(titles)["input_ids"])
    alias = client.embeddings.create(model="text-embedding-3-small", input=titles[:3])
    assert alias.model == "text-embedding-3-small"
    np.testing.assert_allclose([d.embedding for d in alias.data], want[:3], atol=ATOL)
    hub = client.embeddings.create(model="sentence-transformers/" + MODEL, input=[titles[1]], encoding_format="float")
    np.testing.assert_allclose(hub.data[0].embedding, want[1], atol=ATOL)


def test_openai_client_models_and_error_types(server):
    import openai

    client = openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL, RERANKER, "text-embedding-3-small"]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-ada-002", input="x")
    with pytest.raises(openai.BadRequestError, match="must not be empty"):
        client.embeddings.create(model=MODEL, input=[])
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        client.embeddings.create(model=MODEL, input="x", dimensions=1000)


def test_langchain_embed_documents_over_mixed_lengths(server, embedder, reference):
    from langchain_openai import OpenAIEmbeddings

    docs = corpus(1500)
    texts = short_titles(2048)[:1500]
    texts[::100] = [d["title"] + " " + d["text"] for d in docs[::100]]  # 15 whole abstracts, most over 256 tokens
    lengths = [len(ids) for ids in embedder.tokenizer(texts)["input_ids"]]
    assert sum(n > 256 for n in lengths) >= 5  # beyond the model's limit: truncated, not refused
    lc = OpenAIEmbeddings(model=MODEL, base_url=server[0] + "/v1", api_key="unused", check_embedding_ctx_length=False)
    got = np.asarray(lc.embed_documents(texts))
    np.testing.assert_allclose(got, reference(texts), atol=ATOL)
    np.testing.assert_allclose(lc.embed_query(texts[1]), reference(texts[1:2])[0], atol=ATOL)


def test_cohere_clients_rerank_and_embed(server, reranker, embedder):
    import cohere

    query = "What do giant pandas eat?"
    docs = [d["title"] for d in corpus(40)] + ["Giant pandas eat bamboo almost exclusively."]
    want = sigmoid(reranker.compute_score([[query, d] for d in docs]))
    v2 = cohere.ClientV2(api_key="unused", base_url=server[0])
    out = v2.rerank(model="bert-reranker", query=query, documents=docs, top_n=5)
    order = list(np.argsort(-want, kind="stable")[:5])
    assert [r.index for r in out.results] == order
    np.testing.assert_allclose([r.relevance_score for r in out.results], want[order], atol=ATOL)
    v1 = cohere.Client(api_key="unused", base_url=server[0]).rerank(model="bert-reranker", query=query, documents=docs)
    assert sorted(r.index for r in v1.results) == list(range(len(docs)))
    np.testing.assert_allclose([r.relevance_score for r in v1.results], want[[r.index for r in v1.results]], atol=ATOL)
    emb = v2.embed(model=MODEL, texts=docs[:3], input_type="search_document", embedding_types=["float"])
    np.testing.assert_allclose(emb.embeddings.float_, embedder.encode(docs[:3]), atol=ATOL)


def test_huggingface_inference_client(server, embedder, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    # the suite runs with HF_HUB_OFFLINE=1, under which huggingface_hub refuses every URL, even a local server
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(model=server[0])
    text = "The giant panda eats bamboo."
    got = client.feature_extraction(text)  # posts to / as TEI allows
    np.testing.assert_allclose(np.asarray(got).reshape(-1), embedder.encode(text), atol=ATOL)
    others = ["Pandas live in the mountains of Sichuan.", "Insulin regulates blood sugar."]
    sims = client.sentence_similarity(text, other_sentences=others)
    want = embedder.encode(others) @ embedder.encode(text)
    np.testing.assert_allclose(sims, want, atol=ATOL)
    assert sims[0] > sims[1]


def test_port_out_of_range_is_a_clear_error():
    out = subprocess.run([sys.executable, "-m", "bgekit", "serve", "--port", "70000"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--port: a port is a number from 0 to 65535" in out.stderr


def test_a_busy_port_is_a_clear_error(server):
    port = server[0].rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "bgekit", "serve", "--port", port], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "choose another --port" in out.stderr


def test_ctrl_c_is_a_normal_stop(server):
    """Ctrl-C (SIGINT) is how a server is stopped: exit 0 and one 'stopped' line, not the 130 'interrupted' of a job.
    (Runs last in this module: it stops the module's server.)"""
    import signal

    _, _, proc, log = server
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    err = log.read_text()
    assert err.rstrip().endswith("bgekit serve: stopped") and "interrupted" not in err and "Traceback" not in err
