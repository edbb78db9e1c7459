"""Bad input to the Python API: one line per case - a call, the error class, a fragment of its message.

The call is a Python expression over the names in ``namespace`` below (``emb`` is a loaded tiny BERT embedder,
``rr`` a tiny cross-encoder, BERT / M3 / XLMR their folders). Every error is raised at construction or before
any forward pass, and its class tells the CLI's exit code (bgekit.errors).
"""
import pytest

from bad_input import BERT, M3, XLMR
from bgekit.errors import DeviceError, InputError, InputFileError, ModelError, ModelMismatch, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [
    # devices: checked at construction, naming the argument and what this machine has
    ("Embedder(BERT, devices='banana')", DeviceError, "device 'banana' (devices / --device) is not available"),
    ("Embedder(BERT, devices='cuda:7')", DeviceError, "available: cpu"),
    ("Embedder(BERT, devices='mps')", DeviceError, "device 'mps'"),
    ("Embedder(BERT, devices=['cpu', 'banana'])", DeviceError, "device 'banana'"),
    ("Reranker(XLMR, devices='banana')", DeviceError, "device 'banana'"),
    ("Embedder('BAAI/bge-m3', devices='banana')", DeviceError, "device 'banana'"),  # before any download
    # 0 and negative values are errors everywhere, never "the default"
    ("Embedder(BERT, query_max_length=0)", UsageError, "query_max_length must be a positive integer, got 0"),
    ("Embedder(BERT, passage_max_length=-5)", UsageError, "passage_max_length must be a positive integer, got -5"),
    ("Embedder(BERT, batch_size=0)", ValueError, "batch_size must be a positive integer, got 0"),
    ("emb.encode(['a', 'b'], batch_size=0)", ValueError, "batch_size must be a positive integer, got 0"),
    ("emb.encode(['a'], max_length=0)", UsageError, "max_length must be a positive integer, got 0"),
    ("emb.encode_queries(['a'], max_length=0)", UsageError, "max_length must be a positive integer, got 0"),
    ("Reranker(XLMR, max_length=0)", UsageError, "max_length must be a positive integer, got 0"),
    ("rr.score([('q', 'p')], max_length=0)", UsageError, "max_length must be a positive integer, got 0"),
    # lengths against the model's position table; dimensions against the model
    ("Embedder(BERT, passage_max_length=600)", ModelMismatch, "beyond the model's position limit of 512 tokens"),
    ("emb.encode(['word ' * 700], max_length=513)", ModelMismatch, "position limit of 512"),
    ("M3Embedder(M3, query_max_length=513)", ModelMismatch, "position limit of 512"),  # XLM-R: 514 rows - 2
    ("Reranker(XLMR, max_length=600)", ModelMismatch, "position limit of 512"),
    ("Embedder(BERT, truncate_dim=33)", ModelMismatch, "truncate_dim=33 is larger than the model's dimension 32"),
    # evaluation settings
    ("EvalConfig(retrieval='bm25', bm25_k1=-0.1)", UsageError, "bm25_k1 (--bm25-k1) must be a number >= 0"),
    ("EvalConfig(retrieval='bm25', bm25_b=1.5)", UsageError, "bm25_b (--bm25-b) must be a number in 0..1"),
    ("BM25Index(['a doc'], k1=-1)", UsageError, "bm25_k1 (--bm25-k1) must be a number >= 0, got -1"),
    ("BM25Index(['a doc'], b=-0.5)", UsageError, "bm25_b (--bm25-b) must be a number in 0..1, got -0.5"),
    ("EvalConfig(batch_size=0)", ValueError, "batch_size must be a positive integer, got 0"),
    ("EvalConfig(rerank_batch_size=0)", ValueError, "rerank_batch_size must be a positive integer, got 0"),
    ("check_model_fits(emb, EvalConfig(retrieval='sparse'))", ModelMismatch, "is a dense-only embedder"),
    ("check_model_fits(emb, EvalConfig(index_factory='Bogus12'))", UsageError, "FAISS refuses them"),
    ("EmbeddingCache(latin1)", UsageError, "latin1.jsonl' is a file; give a folder"),
    # inputs
    ("list(iter_jsonl(folder))", InputFileError, "is a folder; expected a file"),
    ("list(iter_jsonl(latin1))", InputError, "latin1.jsonl:2: not valid UTF-8"),
    ("list(iter_jsonl(bom))", None, ""),  # a UTF-8 byte-order mark is accepted, as for .txt
    ("locate('BAAI/bge-smal-en-v1.5')", ModelError, "Did you mean 'BAAI/bge-small-en-v1.5'"),
]


@pytest.fixture(scope="module")
def namespace(tmp_path_factory):
    from bgekit import Embedder, M3Embedder, Reranker
    from bgekit.backends import locate
    from bgekit.eval.cache import EmbeddingCache
    from bgekit.eval.retrieval import BM25Index
    from bgekit.eval.runner import EvalConfig, check_model_fits
    from bgekit.io import iter_jsonl

    d = tmp_path_factory.mktemp("api")
    (d / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    (d / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "ok"}\n')
    return {"Embedder": Embedder, "M3Embedder": M3Embedder, "Reranker": Reranker, "EvalConfig": EvalConfig,
            "check_model_fits": check_model_fits, "BM25Index": BM25Index, "EmbeddingCache": EmbeddingCache, "iter_jsonl": iter_jsonl, "locate": locate,
            "BERT": BERT, "M3": M3, "XLMR": XLMR, "emb": Embedder(BERT, devices="cpu"), "rr": Reranker(XLMR, devices="cpu"),
            "folder": str(d), "latin1": str(d / "latin1.jsonl"), "bom": str(d / "bom.jsonl")}


@pytest.mark.parametrize("call,error,fragment", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input(call, error, fragment, namespace):
    if error is None:
        eval(call, dict(namespace))
        return
    with pytest.raises(error) as info:
        eval(call, dict(namespace))
    assert fragment in str(info.value)
