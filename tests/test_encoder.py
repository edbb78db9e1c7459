"""Embedder behaviour beyond the golden cases: bad input, options, devices, loading paths."""
import shutil

import numpy as np
import pytest
import torch

from bgekit import Embedder, FlagAutoModel, FlagLLMModel, FlagModel
from golden import GOLDEN

BERT = str(GOLDEN / "models" / "bert-embedder")
DECODER = str(GOLDEN / "models" / "decoder-embedder")


@pytest.fixture(scope="module")
def bert():
    return FlagModel(BERT, use_fp16=False, devices="cpu")


@pytest.fixture(scope="module")
def minilm():
    return FlagAutoModel.from_finetuned("sentence-transformers/all-MiniLM-L6-v2", devices="cpu")


def test_empty_list_gives_empty_matrix(bert):
    out = bert.encode([])
    assert out.shape == (0, 32) and out.dtype == np.float32
    assert bert.encode_queries([]).shape == (0, 32)


def test_non_string_item_names_its_index(bert):
    with pytest.raises(TypeError, match=r"sentences\[2\]"):
        bert.encode(["a", "b", 7])
    with pytest.raises(TypeError, match="None"):
        bert.encode(None)


def test_empty_string_is_embedded(bert):
    out = bert.encode(["", "hello"])
    assert out.shape == (2, 32) and np.isfinite(out).all()
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_long_text_is_truncated_not_rejected(bert):
    long = "word " * 5000
    a = bert.encode([long], max_length=32)
    b = bert.encode([" ".join(["word"] * 30)], max_length=32)  # same first 30 tokens + [CLS]/[SEP]
    assert np.allclose(a, b, atol=1e-6)


def test_unknown_keyword_arguments_raise(bert):
    with pytest.raises(TypeError, match="normalise_embeddings"):
        FlagModel(BERT, use_fp16=False, devices="cpu", normalise_embeddings=False)
    with pytest.raises(TypeError, match="return_tensors"):
        bert.encode(["a"], return_tensors=True)
    with pytest.raises(TypeError, match="colour"):
        FlagAutoModel.from_finetuned(BERT, model_class="encoder-only-base", colour="red")


def test_invalid_pooling_and_dtype_list_valid_values():
    with pytest.raises(ValueError, match="cls, mean, last_token"):
        FlagModel(BERT, pooling_method="max", devices="cpu")
    with pytest.raises(ValueError, match="fp32, fp16, bf16"):
        Embedder(BERT, dtype="int8", devices="cpu")
    with pytest.raises(ValueError, match="last_token"):
        FlagLLMModel(DECODER, pooling_method="mean", devices="cpu")


def test_missing_local_path_and_undownloadable_name(monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FlagModel("./no/such/model", devices="cpu")

    def offline(*a, **k):
        raise ConnectionError("network unreachable")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    with pytest.raises(OSError, match="could not get model 'BAAI/bge-small-en-v1.5'.*local folder"):
        FlagAutoModel.from_finetuned("BAAI/bge-small-en-v1.5", devices="cpu")


def test_hub_name_downloads_and_resolves_by_name(monkeypatch, tmp_path):
    snapshot = tmp_path / "hub" / "models--BAAI--bge-small-en-v1.5" / "snapshots" / "abc123"
    shutil.copytree(BERT, snapshot)
    calls = []

    def fake_download(repo_id, cache_dir=None):
        calls.append((repo_id, cache_dir))
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_download)
    model = FlagAutoModel.from_finetuned("BAAI/bge-small-en-v1.5", use_fp16=False, devices="cpu")
    assert calls and calls[0][0] == "BAAI/bge-small-en-v1.5"
    assert isinstance(model, FlagModel) and model.pooling_method == "cls"
    ref = FlagModel(BERT, use_fp16=False, devices="cpu")
    assert np.allclose(model.encode(["a b c"]), ref.encode(["a b c"]))


def test_single_string_gives_vector_and_tensor_output(bert):
    assert bert.encode("hello").shape == (32,)
    t = bert.encode(["hello", "world"], convert_to_numpy=False)
    assert isinstance(t, torch.Tensor) and t.shape == (2, 32)


def test_truncate_dim_keeps_unit_norm():
    m = FlagModel(BERT, use_fp16=False, devices="cpu", truncate_dim=8)
    out = m.encode(["a", "b c"])
    assert out.shape == (2, 8) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_results_do_not_depend_on_batch_size(bert):
    texts = [("token " * n).strip() for n in range(1, 20)]
    assert np.allclose(bert.encode(texts, batch_size=1), bert.encode(texts, batch_size=7), atol=1e-6)


def test_quick_start_with_real_minilm(minilm):
    emb1 = minilm.encode(["I love NLP", "I love machine learning"])
    emb2 = minilm.encode(["I love BGE", "I love text retrieval", "The weather is cold today"])
    sim = emb1 @ emb2.T
    assert emb1.shape == (2, 384) and sim.shape == (2, 3)
    assert sim[:, :2].min() > sim[:, 2].max()  # NLP sentences closer to each other than to the weather
    assert minilm.pooling_method == "mean"


def test_bf16_on_cpu_is_real_bf16_and_close(minilm):
    bf16 = FlagAutoModel.from_finetuned("all-MiniLM-L6-v2", use_bf16=True, devices="cpu")
    assert bf16.model.dtype == torch.bfloat16
    assert minilm.model.dtype == torch.float32  # use_fp16=True (the default) runs fp32 on CPU
    texts = ["I love NLP", "Paris is the capital of France.", "A long sentence " * 20]
    a, b = minilm.encode(texts), bf16.encode(texts)
    assert b.dtype == np.float32
    assert (np.sum(a * b, axis=1) > 0.999).all()


def test_several_devices_match_one():
    texts = [f"sentence number {i} " * (i % 5 + 1) for i in range(9)]
    one = FlagModel(BERT, use_fp16=False, devices="cpu").encode(texts)
    two = FlagModel(BERT, use_fp16=False, devices=["cpu", "cpu"]).encode(texts)
    assert np.allclose(one, two, atol=1e-6)


def test_native_embedder_uses_model_defaults():
    e = Embedder("all-MiniLM-L6-v2", devices="cpu")
    assert (e.pooling_method, e.passage_max_length, e.query_instruction_for_retrieval) == ("mean", 256, None)
    assert e.encode_queries(["q"]).shape == (1, 384)


def test_saved_folder_resolves_to_same_kind_whatever_its_name(tmp_path):
    src = Embedder(BERT, pooling="mean", query_instruction="q: ", devices="cpu")
    folder = src.save_pretrained(str(tmp_path / "bge-m3-lookalike"))  # a misleading name
    again = Embedder(folder, devices="cpu")
    assert (again.spec.kind, again.pooling_method, again.query_instruction_for_retrieval) == ("encoder", "mean", "q: ")
    assert np.allclose(again.encode_queries(["x y"]), src.encode_queries(["x y"]), atol=1e-6)
    auto = FlagAutoModel.from_finetuned(folder, use_fp16=False, devices="cpu")
    assert isinstance(auto, FlagModel) and auto.pooling_method == "mean"


def test_decoder_right_padding_is_handled():
    model = FlagLLMModel(DECODER, use_fp16=False, devices="cpu")
    model.tokenizer.padding_side = "right"
    texts = ["short", "a somewhat longer text with more tokens in it"]
    batch = model.encode(texts)
    alone = np.stack([model.encode([t]) [0] for t in texts])
    assert np.allclose(batch, alone, atol=1e-5)  # right padding shifts no positions
