"""BGE-M3 on the tiny golden fixture: output shapes and types, bad input, heads, and behaviour the parity cases
do not reach (batch-size independence, truncate_dim, the compact sparse form, bf16, the ColBERT padding fix)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from golden import GOLDEN
from bgekit.heads import COLBERT_FILE, SPARSE_FILE, M3Heads, load_heads, save_heads
from bgekit.compat.m3 import BGEM3FlagModel
from bgekit.m3 import M3Embedder, M3Output
from bgekit.types import SparseVector

M3 = str(GOLDEN / "models" / "m3")
TEXTS = ["", "Hi!", "What is the capital of France?", "The quick brown fox jumps over the lazy dog.",
         "北京是中华人民共和国的首都。", "Dense retrievers encode queries and passages into vectors. " * 6]
KEYS = {"dense_vecs", "lexical_weights", "colbert_vecs"}
ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)


@pytest.fixture(scope="module")
def model():
    return BGEM3FlagModel(M3, use_fp16=False, devices="cpu")


@pytest.fixture(scope="module")
def nonorm():
    return BGEM3FlagModel(M3, use_fp16=False, devices="cpu", normalize_embeddings=False)


def _copy_encoder(dst, with_heads: bool = False):
    """The fixture's encoder and tokenizer files (and optionally its heads) in a fresh folder."""
    for f in (GOLDEN / "models" / "m3").iterdir():
        if with_heads or f.name not in (COLBERT_FILE, SPARSE_FILE):
            shutil.copy(f, dst / f.name)
    return str(dst)


# ---------------------------------------------------------------- outputs and bad input

def test_output_keys_and_defaults(model):
    out = model.encode(TEXTS)
    assert set(out) == KEYS
    assert out["lexical_weights"] is None and out["colbert_vecs"] is None
    assert out["dense_vecs"].shape == (len(TEXTS), 32) and out["dense_vecs"].dtype == np.float32
    out = model.encode(TEXTS, return_dense=False, return_sparse=True)
    assert out["dense_vecs"] is None and len(out["lexical_weights"]) == len(TEXTS)


def test_single_string_gives_one_of_each(model):
    out = model.encode("What is the capital of France?", **ALL)
    assert out["dense_vecs"].shape == (32,)
    assert isinstance(out["lexical_weights"], dict)
    assert out["colbert_vecs"].ndim == 2 and out["colbert_vecs"].shape[1] == 32


def test_colbert_rows_are_tokens_minus_one(model):
    out = model.encode(TEXTS, return_colbert_vecs=True)
    n_tokens = [len(ids) for ids in model.tokenizer(TEXTS, truncation=True, max_length=512)["input_ids"]]
    assert [c.shape[0] for c in out["colbert_vecs"]] == [n - 1 for n in n_tokens]
    assert out["colbert_vecs"][0].shape[0] == 1  # "" -> only the </s> row


def test_empty_list_gives_empty_results(model):
    out = model.encode([], **ALL)
    assert out["dense_vecs"].shape == (0, 32) and out["dense_vecs"].dtype == np.float32
    assert out["lexical_weights"] == [] and out["colbert_vecs"] == []
    assert model.compute_score([]) == {m: [] for m in ("colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense")}
    native = model.encode_multi([])
    assert native.dense.shape == (0, 32) and native.sparse == [] and native.colbert == []


def test_bad_input_names_the_item(model):
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        model.encode(["ok", 3])
    with pytest.raises(TypeError, match=r"sentence_pairs\[1\]"):
        model.compute_score([["q", "p"], ["q", None]])
    with pytest.raises(TypeError, match="return_everything"):
        model.encode(["ok"], return_everything=True)
    with pytest.raises(TypeError, match="colbert_size"):
        BGEM3FlagModel(M3, use_fp16=False, devices="cpu", colbert_size=8)
    with pytest.raises(ValueError, match="at least one"):
        model.encode(["ok"], return_dense=False)
    with pytest.raises(ValueError, match="weights_for_different_modes"):
        model.compute_score([["q", "p"]], weights_for_different_modes=[1, 1])


def test_lexical_weights_follow_the_reference_rules(model):
    text = "fox fox jumps x"
    (weights,) = model.encode([text], return_dense=False, return_sparse=True)["lexical_weights"]
    ids = model.tokenizer(text)["input_ids"]
    special = {model.tokenizer.cls_token_id, model.tokenizer.eos_token_id, model.tokenizer.pad_token_id,
               model.tokenizer.unk_token_id}
    assert all(int(k) not in special and v > 0 for k, v in weights.items())
    first_seen = list(dict.fromkeys(str(i) for i in ids if str(i) in weights))
    assert list(weights) == first_seen  # the reference's key order: first occurrence in the text
    assert set(weights) <= {str(i) for i in ids}


def test_sparse_vector_form_equals_dict_form(model):
    dicts = model.encode(TEXTS, return_dense=False, return_sparse=True)["lexical_weights"]
    native = model.encode_multi(TEXTS, role="text", outputs=("sparse",))
    assert native.dense is None and native.colbert is None
    for vec, d, text in zip(native.sparse, dicts, TEXTS):
        assert isinstance(vec, SparseVector)
        assert vec.indices.dtype == np.int64 and vec.values.dtype == np.float32
        assert np.all(np.diff(vec.indices) > 0)
        assert len(vec) <= len(model.tokenizer(text)["input_ids"])  # compact, never vocabulary-sized
        assert vec.to_dict() == d


# ---------------------------------------------------------------- invariants

def test_batch_size_independence(model):
    a = model.encode(TEXTS, batch_size=1, **ALL)
    b = model.encode(TEXTS, batch_size=64, **ALL)
    np.testing.assert_allclose(a["dense_vecs"], b["dense_vecs"], atol=1e-5)
    for x, y in zip(a["colbert_vecs"], b["colbert_vecs"]):
        np.testing.assert_allclose(x, y, atol=1e-5)
    for x, y in zip(a["lexical_weights"], b["lexical_weights"]):
        assert x.keys() == y.keys()
        np.testing.assert_allclose(list(x.values()), list(y.values()), atol=1e-5)


def test_truncate_dim_slices_dense_and_colbert(nonorm):
    cut = BGEM3FlagModel(M3, use_fp16=False, devices="cpu", normalize_embeddings=False, truncate_dim=16)
    full, short = nonorm.encode(TEXTS, **ALL), cut.encode(TEXTS, **ALL)
    assert short["dense_vecs"].shape == (len(TEXTS), 16)
    np.testing.assert_allclose(short["dense_vecs"], full["dense_vecs"][:, :16], atol=1e-6)
    for s, f in zip(short["colbert_vecs"], full["colbert_vecs"]):
        np.testing.assert_allclose(s, f[:, :16], atol=1e-6)
    assert short["lexical_weights"] == full["lexical_weights"]
    assert cut.dim == 16 and cut.colbert_vector_dim == 16


def test_normalisation_applies_to_dense_and_colbert(model, nonorm):
    out = model.encode(TEXTS, **ALL)
    np.testing.assert_allclose(np.linalg.norm(out["dense_vecs"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(out["colbert_vecs"]), axis=1), 1.0, atol=1e-5)
    raw = nonorm.encode(TEXTS, **ALL)
    assert not np.allclose(np.linalg.norm(raw["dense_vecs"], axis=1), 1.0)


def test_bf16_on_cpu_stays_close_to_fp32(model):
    bf16 = BGEM3FlagModel(M3, use_bf16=True, devices="cpu")
    assert bf16.dtype == torch.bfloat16 and bf16.heads.colbert.weight.dtype == torch.bfloat16
    a, b = model.encode(TEXTS, **ALL), bf16.encode(TEXTS, **ALL)
    assert b["dense_vecs"].dtype == np.float32
    # measured on these texts: dense cosine >= 0.99984, the same sparse tokens with weights within 0.031, ColBERT
    # token cosines >= 0.99981; the bounds leave about a 3x margin on each
    cos = np.sum(a["dense_vecs"] * b["dense_vecs"], axis=1)
    assert cos.min() > 0.9995
    for x, y in zip(a["lexical_weights"], b["lexical_weights"]):
        assert set(x) == set(y)
        assert max([abs(x[k] - y[k]) for k in x] or [0.0]) < 0.1
    assert [c.shape for c in a["colbert_vecs"]] == [c.shape for c in b["colbert_vecs"]]
    assert min(np.sum(c * d, axis=1).min() for c, d in zip(a["colbert_vecs"], b["colbert_vecs"])) > 0.9995


def test_compute_score_equals_scores_of_encode_outputs(model):
    pairs = [["What is the capital of France?", "Paris is the capital of France."],
             ["fox", ""], ["", "Machine learning is a field of study."], ["fox", "The quick brown fox."]]
    scores = model.compute_score(pairs, weights_for_different_modes=[0.4, 0.2, 0.4])
    q = model.encode([a for a, _ in pairs], **ALL)
    p = model.encode([b for _, b in pairs], **ALL)
    for i in range(len(pairs)):
        assert scores["dense"][i] == pytest.approx(float(q["dense_vecs"][i] @ p["dense_vecs"][i]), abs=1e-6)
        sparse = model.compute_lexical_matching_score(q["lexical_weights"][i], p["lexical_weights"][i])
        assert scores["sparse"][i] == pytest.approx(sparse, abs=1e-6)
        colbert = model.colbert_score(q["colbert_vecs"][i], p["colbert_vecs"][i])
        assert colbert.ndim == 0 and isinstance(colbert, torch.Tensor)
        assert scores["colbert"][i] == pytest.approx(float(colbert), abs=1e-6)
        d, s, c = scores["dense"][i], scores["sparse"][i], scores["colbert"][i]
        assert scores["sparse+dense"][i] == pytest.approx((0.2 * s + 0.4 * d) / 0.6)
        assert scores["colbert+sparse+dense"][i] == pytest.approx(0.4 * c + 0.2 * s + 0.4 * d)
    single = model.compute_score(tuple(pairs[0]))
    assert set(single) == set(scores) and all(isinstance(v, float) for v in single.values())


def test_compute_score_uses_truncate_dim(nonorm):
    """Differs from the reference on purpose (docs/compat.md): compute_score sees the same vectors as encode."""
    cut = BGEM3FlagModel(M3, use_fp16=False, devices="cpu", truncate_dim=8)
    q, p = "What is the capital of France?", "Paris is the capital of France."
    dense = cut.encode([q, p])["dense_vecs"]
    assert cut.compute_score([q, p])["dense"] == pytest.approx(float(dense[0] @ dense[1]), abs=1e-6)


def _reference_padded_colbert(q: np.ndarray, passages: list[np.ndarray], i: int) -> float:
    """What FlagEmbedding 1.4.2's compute_score gives for passage i of a padded batch: zero rows stand in for
    padding, so every query token's max is at least 0."""
    width = max(len(p) for p in passages)
    padded = np.zeros((width, q.shape[1]), dtype=np.float32)
    padded[: len(passages[i])] = passages[i]
    return float((q @ padded.T).max(axis=1).sum() / len(q))


def test_colbert_score_masks_padding_with_negative_similarities(tmp_path, model):
    """A head that points the query's tokens and the short passage's tokens in opposite directions gives
    negative token similarities; there the reference's padded batch clips each query token's max at 0, and
    our compute_score does not (it equals colbert_score on the unpadded vectors)."""
    query, passages = "fox jumps", ["Hi!", "The quick brown fox jumps over the lazy dog. " * 3]

    def states(text):  # (n_tokens - 1, H): the token states the ColBERT head sees
        with torch.no_grad():
            return model.model(**model.tokenizer([text], return_tensors="pt")).last_hidden_state[0, 1:]

    hq, hp = states(query).mean(0), states(passages[0]).mean(0)
    heads = load_heads(M3, 32)
    with torch.no_grad():  # rank one: + for query-like states, - for passage-like ones
        heads.colbert.weight.zero_()
        heads.colbert.weight[0] = hq - hp
        heads.colbert.bias.zero_()
        heads.colbert.bias[0] = -(hq - hp) @ (hq + hp) / 2
    folder = _copy_encoder(tmp_path)
    save_heads(heads, folder)
    m3 = BGEM3FlagModel(folder, use_fp16=False, devices="cpu")
    q = m3.encode(query, return_dense=False, return_colbert_vecs=True)["colbert_vecs"]
    p = m3.encode(passages, return_dense=False, return_colbert_vecs=True)["colbert_vecs"]
    ours = m3.compute_score([[query, passages[0]], [query, passages[1]]], batch_size=2)["colbert"]
    exact = float(m3.colbert_score(q, p[0]))
    assert exact < 0
    assert ours[0] == pytest.approx(exact, abs=1e-6)
    assert _reference_padded_colbert(q, p, 0) > exact + 0.1  # the case really triggers the reference quirk
    assert ours[1] == pytest.approx(float(m3.colbert_score(q, p[1])), abs=1e-6)


# ---------------------------------------------------------------- helpers of the compat class

def test_convert_id_to_token_collisions_and_single_list(model):
    a, b = 18, 27  # both decode to "a" in the fixture's vocabulary
    assert model.tokenizer.decode([a]) == model.tokenizer.decode([b]) == "a"
    assert model.convert_id_to_token({str(a): 0.5, str(b): 0.25, "499": 1.0}) == {"a": 0.25, "ox": 1.0}
    assert model.convert_id_to_token([{str(b): 0.25, str(a): 0.5}]) == {"a": 0.5}  # one-item list -> dict
    assert len(model.convert_id_to_token([{"499": 1.0}, {}])) == 2
    with pytest.raises(TypeError, match="lexical_weights must be a dict or a list of dicts, got str"):
        model.convert_id_to_token("499")


def test_lexical_matching_types(model):
    lw = model.encode(TEXTS[:3], return_dense=False, return_sparse=True)["lexical_weights"]
    matrix = model.compute_lexical_matching_score(lw, lw)
    assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float64 and matrix.shape == (3, 3)
    assert isinstance(model.compute_lexical_matching_score(lw[1], lw[2]), float)
    assert model.compute_lexical_matching_score(lw[0], lw[1]) == 0.0  # "" has no weights
    with pytest.raises(TypeError, match="both be dicts or both be lists of dicts"):
        model.compute_lexical_matching_score(lw, lw[0])


# ---------------------------------------------------------------- native API, loading, heads

def test_native_api_and_auto_loading(model):
    from bgekit.compat.embedder import FlagAutoModel
    from bgekit.loading import load_embedder

    native = load_embedder(M3, devices="cpu")
    assert type(native) is M3Embedder
    dense = native.encode(TEXTS)  # the plain Embedder contract: an array
    np.testing.assert_allclose(dense, model.encode(TEXTS)["dense_vecs"], atol=1e-6)
    auto = FlagAutoModel.from_finetuned(M3, model_class="encoder-only-m3", use_fp16=False, devices="cpu")
    assert isinstance(auto, BGEM3FlagModel) and auto.pooling_method == "cls"
    out = native.encode_multi("Hi!")
    assert isinstance(out, M3Output) and out.dense.shape == (32,) and isinstance(out.sparse, SparseVector)
    with pytest.raises(ValueError, match="valid: query, passage, text"):
        native.encode_multi(["x"], role="doc")
    with pytest.raises(ValueError, match="valid: dense, sparse, colbert"):
        native.encode_multi(["x"], outputs=("dense", "lexical"))


def test_query_instruction_is_applied_by_role():
    m3 = M3Embedder(M3, devices="cpu", query_instruction="query: ")
    a = m3.encode_multi(["fox"], role="query")
    b = m3.encode_multi(["query: fox"], role="text")
    np.testing.assert_allclose(a.dense, b.dense, atol=1e-6)
    assert a.sparse[0].to_dict() == b.sparse[0].to_dict()


def test_missing_heads_raise_a_clear_error(tmp_path):
    folder = _copy_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="colbert_linear.pt and sparse_linear.pt"):
        BGEM3FlagModel(folder, use_fp16=False, devices="cpu")


def test_heads_save_load_round_trip(tmp_path, model):
    folder = _copy_encoder(tmp_path)
    paths = save_heads(model.heads, folder)
    assert sorted(p.rsplit("/", 1)[1] for p in paths) == [COLBERT_FILE, SPARSE_FILE]
    again = load_heads(folder, 32)
    for a, b in zip(model.heads.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    reloaded = BGEM3FlagModel(folder, use_fp16=False, devices="cpu")
    x, y = model.encode(TEXTS, **ALL), reloaded.encode(TEXTS, **ALL)
    np.testing.assert_array_equal(x["dense_vecs"], y["dense_vecs"])
    assert x["lexical_weights"] == y["lexical_weights"]


def test_bad_head_files(tmp_path):
    folder = _copy_encoder(tmp_path, with_heads=True)
    with pytest.raises(ValueError, match="colbert_dim=8"):
        load_heads(folder, 32, colbert_dim=8)
    torch.save({"weight": torch.zeros(1, 16), "bias": torch.zeros(1)}, tmp_path / SPARSE_FILE)
    with pytest.raises(ValueError, match="do not fit a Linear"):
        load_heads(folder, 32)
    torch.save({"w": torch.zeros(1, 32)}, tmp_path / SPARSE_FILE)
    with pytest.raises(ValueError, match="keys"):
        load_heads(folder, 32)


def test_smaller_colbert_head_is_read_from_the_file(tmp_path):
    folder = _copy_encoder(tmp_path)
    save_heads(M3Heads(32, colbert_dim=8), folder)
    m3 = M3Embedder(folder, devices="cpu", colbert_dim=-1)
    assert m3.colbert_vector_dim == 8
    assert m3.encode_multi("fox", outputs="colbert").colbert.shape[1] == 8


def test_two_devices_give_the_same_outputs(model):
    two = BGEM3FlagModel(M3, use_fp16=False, devices=["cpu", "cpu"])
    a, b = model.encode(TEXTS, **ALL), two.encode(TEXTS, **ALL)
    np.testing.assert_allclose(a["dense_vecs"], b["dense_vecs"], atol=1e-6)
    for x, y in zip(a["lexical_weights"], b["lexical_weights"]):
        assert list(x) == list(y)
        np.testing.assert_allclose(list(x.values()), list(y.values()), atol=1e-5)
    for x, y in zip(a["colbert_vecs"], b["colbert_vecs"]):
        np.testing.assert_allclose(x, y, atol=1e-5)
