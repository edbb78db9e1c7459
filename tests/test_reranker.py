"""Rerankers: input construction, the one-token "Yes" logit, ranking, bad input, registry and auto dispatch.

Parity with the reference outputs is in test_parity.py (every FlagReranker / FlagLLMReranker case).
"""
from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch

from bgekit import registry
from bgekit.compat.reranker import FlagAutoReranker, FlagLLMReranker, FlagReranker
from bgekit.registry import RERANKERS, ModelSpec, UnknownModelError, resolve_reranker, write_spec_file
from bgekit.reranker import Reranker, rank_scores
from bgekit.reranker_inputs import (PairTemplate, check_pairs, cross_encoder_features, fit_pair, last_positions,
                                    llm_features)
from bgekit.types import Hit
from golden import CLASSES, GOLDEN, cases

XLMR = str(GOLDEN / "models" / "xlmr-reranker")
BERT = str(GOLDEN / "models" / "bert-reranker")
LLM = str(GOLDEN / "models" / "llm-reranker")
PAIRS = [
    ["what is panda?", "hi"],
    ["what is panda?", "The giant panda is a bear species endemic to China."],
    ["", "an empty query"],
    ["capital of France", ""],
    ["capital of France", "Paris is the capital of France. " * 60],
]


@pytest.fixture(scope="module")
def xlmr():
    return FlagReranker(XLMR, use_fp16=False, devices="cpu")


@pytest.fixture(scope="module")
def bert():
    return FlagReranker(BERT, devices="cpu")


@pytest.fixture(scope="module")
def llm():
    return FlagLLMReranker(LLM, devices="cpu")


# ---------------------------------------------------------------- parity coverage

def test_every_reranker_case_is_covered():
    """Every FlagReranker / FlagLLMReranker case of the manifest runs in test_parity.py."""
    ours = {"FlagReranker", "FlagLLMReranker"}
    assert ours <= set(CLASSES)
    ids = {c["id"] for c in cases(set(CLASSES))}
    wanted = cases(ours)
    assert len(wanted) >= 18
    assert [c["id"] for c in wanted if c["id"] not in ids] == []


# ---------------------------------------------------------------- registry and auto dispatch

# Every name in FlagEmbedding 1.4.2's reranker model_mapping.py (two of its keys there end in a space).
REFERENCE_NAMES = {
    "bge-reranker-base": "cross-encoder", "bge-reranker-large": "cross-encoder", "bge-reranker-v2-m3": "cross-encoder",
    "bge-reranker-v2-gemma": "llm", "bge-reranker-v2-minicpm-layerwise": "layerwise",
    "bge-reranker-v2.5-gemma2-lightweight": "lightweight", "jina-reranker-v2-base-multilingual": "cross-encoder",
    "gte-multilingual-reranker-base": "cross-encoder", "bce-reranker-base_v1": "cross-encoder",
    "jina-reranker-v1-turbo-en": "cross-encoder",
}


@pytest.mark.parametrize("name", sorted(REFERENCE_NAMES))
def test_every_reference_reranker_name_resolves(name):
    for query in (name, f"BAAI/{name}", f"/runs/{name}/checkpoint-500", name.upper()):
        assert resolve_reranker(query).kind == REFERENCE_NAMES[name], query
    assert name in RERANKERS


def test_the_reference_names_with_a_trailing_space_resolve_here():
    # In the reference, "bge-reranker-base " never equals os.path.basename("BAAI/bge-reranker-base").
    assert resolve_reranker("BAAI/bge-reranker-base").kind == "cross-encoder"
    assert resolve_reranker("BAAI/bge-reranker-large").kind == "cross-encoder"


@pytest.mark.parametrize("folder,kind", [("xlmr-reranker", "cross-encoder"), ("bert-reranker", "cross-encoder"),
                                         ("llm-reranker", "llm"), ("layerwise-reranker", "layerwise"),
                                         ("lightweight-reranker", "lightweight")])
def test_fixture_folders_resolve_by_their_config(folder, kind):
    assert resolve_reranker(str(GOLDEN / "models" / folder)).kind == kind


def _config_folder(tmp_path, name, config):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def test_saved_spec_wins_over_config_and_files_win_over_name(tmp_path):
    folder = _config_folder(tmp_path, "bge-reranker-v2-m3", {"architectures": ["GemmaForCausalLM"], "model_type": "gemma"})
    spec = resolve_reranker(folder)
    assert spec.kind == "llm" and spec.query_instruction == "A: "  # the files say LLM, whatever the name
    write_spec_file(folder, ModelSpec("cross-encoder", max_length=256))
    assert resolve_reranker(folder) == ModelSpec("cross-encoder", max_length=256)


def test_name_row_is_kept_when_the_files_agree(tmp_path):
    folder = _config_folder(tmp_path, "jina-reranker-v2-base-multilingual",
                            {"architectures": ["XLMRobertaForSequenceClassification"], "model_type": "XLM-RoBERTa"})
    assert resolve_reranker(folder).trust_remote_code is True


def test_plain_minicpm_is_an_llm_reranker_but_with_heads_is_layerwise(tmp_path):
    plain = _config_folder(tmp_path, "a", {"architectures": ["MiniCPMForCausalLM"], "model_type": "minicpm"})
    heads = _config_folder(tmp_path, "b", {"architectures": ["MiniCPMForCausalLM"], "model_type": "minicpm", "start_layer": 8})
    assert resolve_reranker(plain).kind == "llm"
    assert resolve_reranker(heads).kind == "layerwise"


def test_unknown_reranker_lists_close_matches_and_embedder_spec_is_refused(tmp_path):
    with pytest.raises(UnknownModelError, match="bge-reranker-v2-m3"):
        resolve_reranker("BAAI/bge-reranker-v2-m4")
    with pytest.raises(UnknownModelError, match="BertModel"):
        resolve_reranker(str(GOLDEN / "models" / "bert-embedder"))
    folder = _config_folder(tmp_path, "emb", {"architectures": ["BertModel"]})
    write_spec_file(folder, ModelSpec("encoder", "cls"))
    with pytest.raises(ValueError, match="embedder"):
        resolve_reranker(folder)


def test_auto_reranker_dispatch():
    assert type(FlagAutoReranker.from_finetuned(XLMR, devices="cpu")) is FlagReranker
    auto = FlagAutoReranker.from_finetuned(LLM, devices="cpu", batch_size=4)
    assert type(auto) is FlagLLMReranker and auto.batch_size == 4
    assert type(FlagAutoReranker.from_finetuned(XLMR, model_class="encoder-only-base", devices="cpu")) is FlagReranker
    with pytest.raises(ValueError, match="2 output labels"):  # a causal LM has no one-logit head
        FlagAutoReranker.from_finetuned(LLM, model_class="encoder-only-base", devices="cpu")
    with pytest.raises(ValueError, match="decoder-only-layerwise"):
        FlagAutoReranker.from_finetuned(XLMR, model_class="decoder-only")
    with pytest.raises(TypeError, match="no_such_option"):
        FlagAutoReranker.from_finetuned(XLMR, devices="cpu", no_such_option=1)
    with pytest.raises(EnvironmentError, match="from_finetuned"):
        FlagAutoReranker()


def test_auto_reranker_imports_the_layerwise_module_lazily(monkeypatch):
    seen = {}

    class Fake:
        def __init__(self, path, **kwargs):
            seen.update(path=path, **kwargs)

    fake = types.ModuleType("bgekit.compat.layerwise")
    fake.LayerWiseFlagLLMReranker = Fake
    fake.LightWeightFlagLLMReranker = Fake
    monkeypatch.setitem(sys.modules, "bgekit.compat.layerwise", fake)
    path = str(GOLDEN / "models" / "layerwise-reranker")
    assert isinstance(FlagAutoReranker.from_finetuned(path, cutoff_layers=[2]), Fake)
    assert seen == {"path": path, "use_fp16": False, "trust_remote_code": False, "cutoff_layers": [2]}


# ---------------------------------------------------------------- input construction

@pytest.mark.parametrize("path", [XLMR, BERT])
def test_untruncated_pairs_match_the_tokenizers_own_pair_encoding(path, xlmr, bert):
    tok = (xlmr if path == XLMR else bert).tokenizer
    pairs = [tuple(p) for p in PAIRS[:3]]  # (an empty passage keeps its separator, as prepare_for_model did)
    feats = cross_encoder_features(tok, pairs, 512, 384)
    for (q, p), f in zip(pairs, feats):
        own = tok(q, p, return_token_type_ids="token_type_ids" in f)
        assert f["input_ids"] == own["input_ids"]
        if "token_type_ids" in f:
            assert f["token_type_ids"] == own["token_type_ids"] and 1 in f["token_type_ids"]


def test_long_passage_is_truncated_and_the_query_kept(bert):
    tok = bert.tokenizer
    query = "where is the capital of france"
    f = cross_encoder_features(tok, [(query, "paris is the capital . " * 200)], 64, 48)[0]
    q_ids = tok(query, add_special_tokens=False)["input_ids"]
    assert len(f["input_ids"]) == 64
    assert f["input_ids"][1:1 + len(q_ids)] == q_ids and f["input_ids"][-1] == tok.sep_token_id
    long_query = cross_encoder_features(tok, [("word " * 100, "passage")], 64, 48)[0]["input_ids"]
    assert long_query[-3:] == [tok.sep_token_id, tok("passage", add_special_tokens=False)["input_ids"][0], tok.sep_token_id]
    assert len(long_query) == 1 + 48 + 3  # query cut to query_max_length, passage kept whole


def test_a_query_longer_than_the_budget_still_fits():
    assert fit_pair([1] * 10, [2] * 3, 8) == ([1] * 8, [])  # the reference would overflow here
    assert fit_pair([1] * 4, [2] * 6, 8) == ([1] * 4, [2] * 4)
    assert fit_pair([1] * 4, [2, 3, 4, 5], 6, side="left") == ([1] * 4, [4, 5])


def test_llm_layout(llm):
    tok = llm.tokenizer
    f = llm_features(tok, [("A: q", "B: p")], 512, 384, "Yes or No?")[0]
    piece = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    expected = [tok.bos_token_id] + piece("A: q") + piece("\n") + piece("B: p") + piece("\n") + piece("Yes or No?")
    assert f["input_ids"] == expected
    assert f["query_length"] == 1 + len(piece("A: q")) + len(piece("\n"))
    assert f["prompt_length"] == len(piece("\n")) + len(piece("Yes or No?"))
    cut = llm_features(tok, [("q", "word " * 400)], 32, 24, "P")[0]["input_ids"]
    assert len(cut) == 32 + 2 * (len(piece("\n")) + len(piece("P")))  # (max_length + sep + prompt), then sep + prompt


def test_last_positions_left_and_right_padding():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0]])
    assert last_positions(mask).tolist() == [3, 3, 1]


def test_pair_template_for_bert_and_xlmr(xlmr, bert):
    t = PairTemplate.probe(bert.tokenizer)
    assert (t.pre, t.mid, t.post) == ([101], [102], [102]) and t.types == (0, 0, 0, 1, 1)
    t = PairTemplate.probe(xlmr.tokenizer)
    assert t.n_special == 4 and t.types is None


# ---------------------------------------------------------------- the one-token "Yes" logit

def _full_yes_logits(model, features, yes):
    out = []
    for f in features:
        ids = torch.tensor([f["input_ids"]])
        with torch.inference_mode():
            out.append(float(model(input_ids=ids).logits[0, -1, yes]))
    return out


def test_yes_logit_equals_the_models_full_logits(llm):
    pairs = [("A: " + q, "B: " + p) for q, p in PAIRS]
    feats = llm_features(llm.tokenizer, pairs, 512, 384)
    assert np.allclose(llm.compute_score(PAIRS), _full_yes_logits(llm.model, feats, llm.yes_token_id), atol=1e-4)
    assert llm.yes_token_id == llm.tokenizer("Yes", add_special_tokens=False)["input_ids"][0]


@pytest.fixture(scope="module")
def gemma2_folder(tmp_path_factory, llm):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=len(llm.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=0.5,
                          initializer_range=0.5, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    folder = tmp_path_factory.mktemp("gemma2-reranker")
    Gemma2ForCausalLM(config).save_pretrained(folder)
    llm.tokenizer.save_pretrained(folder)
    return str(folder)


def test_gemma2_final_logit_softcapping_is_applied(gemma2_folder, caplog):
    rr = Reranker(gemma2_folder, devices="cpu")
    pairs = [("A: " + q, "B: " + p) for q, p in PAIRS]
    feats = llm_features(rr.tokenizer, pairs, 512, 384)
    scores = rr.score(PAIRS)
    assert rr.kind == "llm" and rr._head_checked and not rr._full_logits and "differs" not in caplog.text
    assert np.allclose(scores, _full_yes_logits(rr.model, feats, rr.yes_token_id), atol=1e-5)
    row = rr.model.get_output_embeddings().weight[rr.yes_token_id]
    with torch.inference_mode():
        raw = [float(rr.model.base_model(input_ids=torch.tensor([f["input_ids"]])).last_hidden_state[0, -1] @ row)
               for f in feats]
    assert max(abs(r) for r in raw) > 0.6  # the cap (0.5) matters for these inputs
    assert np.allclose(scores, [math.tanh(r / 0.5) * 0.5 for r in raw], atol=1e-5)


def test_an_unknown_logit_transform_falls_back_to_full_logits(llm, caplog):
    rr = FlagLLMReranker(LLM, devices="cpu")
    expected = rr.compute_score(PAIRS)
    good_head = rr._head
    rr._head = lambda hidden, out: good_head(hidden, out) * 3 + 1  # a model whose forward we would not understand
    rr._check_head()
    assert rr._full_logits and "differs" in caplog.text
    assert np.allclose(rr.compute_score(PAIRS), expected, atol=1e-5)


# ---------------------------------------------------------------- scoring behaviour

def test_single_pair_gives_a_list_with_one_float(xlmr, llm):
    for model in (xlmr, llm):
        out = model.compute_score(PAIRS[1])
        assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], float)
        assert out == model.compute_score([PAIRS[1]])


def test_normalize_is_a_float64_sigmoid(xlmr):
    raw = xlmr.compute_score(PAIRS)
    norm = xlmr.compute_score(PAIRS, normalize=True)
    assert norm == [1 / (1 + math.exp(-x)) for x in raw]
    assert all(0 < s < 1 for s in norm)


def test_order_restored_and_batch_size_irrelevant(xlmr, llm):
    perm = [3, 0, 4, 2, 1]
    for model in (xlmr, llm):
        base = model.compute_score(PAIRS)
        assert np.allclose(model.compute_score([PAIRS[i] for i in perm]), [base[i] for i in perm], atol=1e-5)
        assert np.allclose(model.compute_score(PAIRS, batch_size=1), base, atol=1e-5)
        assert len(set(np.round(base, 6))) == len(base)  # distinct, so a wrong order would show


def test_instructions_change_scores_and_none_removes_llm_defaults(xlmr, llm):
    plain = xlmr.compute_score(PAIRS[:2])
    inst = FlagReranker(XLMR, query_instruction_for_rerank="query: ", passage_instruction_for_rerank="passage: ", devices="cpu")
    assert not np.allclose(inst.compute_score(PAIRS[:2]), plain)
    bare = FlagLLMReranker(LLM, query_instruction_for_rerank=None, passage_instruction_for_rerank=None, devices="cpu")
    prefixed = bare.compute_score([["A: " + q, "B: " + p] for q, p in PAIRS[:2]])
    assert np.allclose(llm.compute_score(PAIRS[:2]), prefixed, atol=1e-6)
    assert not np.allclose(bare.compute_score(PAIRS[:2]), prefixed)


def test_custom_prompt_changes_llm_scores(llm):
    assert not np.allclose(llm.compute_score(PAIRS[:2], prompt="Relevant? Yes or No."), llm.compute_score(PAIRS[:2]))


def test_bad_input(xlmr, llm):
    assert xlmr.compute_score([]) == [] and llm.compute_score([]) == []
    with pytest.raises(TypeError, match=r"sentence_pairs\[1\]"):
        xlmr.compute_score([["q", "p"], ["only one"]])
    with pytest.raises(TypeError, match=r"sentence_pairs\[0\]"):
        llm.compute_score([["q", 3]])
    with pytest.raises(TypeError, match="sentence_pairs"):
        xlmr.compute_score("q")
    for bad in ("yes", 2, 0.5):
        with pytest.raises(ValueError, match="normalize"):
            xlmr.compute_score(PAIRS, normalize=bad)
    with pytest.raises(ValueError, match="normalize"):
        FlagReranker(XLMR, normalize="sigmoid", devices="cpu")
    with pytest.raises(TypeError, match="no_such_option"):
        xlmr.compute_score(PAIRS, no_such_option=True)
    with pytest.raises(TypeError, match="no_such_option"):
        FlagReranker(XLMR, devices="cpu", no_such_option=True)
    with pytest.raises(ValueError, match="max_length"):
        xlmr.compute_score(PAIRS, max_length=0)
    with pytest.raises(ValueError, match="batch_size"):
        xlmr.compute_score(PAIRS, batch_size=0)
    with pytest.raises(ValueError, match="LLM"):
        xlmr.score(PAIRS, prompt="Yes?")


def test_dataloader_options_are_accepted_and_change_nothing(llm):
    assert np.array_equal(llm.compute_score(PAIRS, use_dataloader=True, num_workers=2), llm.compute_score(PAIRS))


def test_check_pairs_accepts_tuples():
    assert check_pairs(("q", "p")) == [("q", "p")]
    assert check_pairs([("q", "p"), ["a", "b"]]) == [("q", "p"), ("a", "b")]


def test_dtypes_on_cpu():
    assert FlagReranker(XLMR, use_fp16=True, devices="cpu").model.dtype == torch.float32  # fp16 on CPU runs fp32
    bf16 = FlagReranker(XLMR, use_bf16=True, devices="cpu")
    assert bf16.model.dtype == torch.bfloat16
    fp32 = FlagReranker(XLMR, devices="cpu").compute_score(PAIRS)
    assert np.allclose(bf16.compute_score(PAIRS), fp32, atol=0.05)


# ---------------------------------------------------------------- native API

def test_rank_sorts_by_score(xlmr):
    passages = [p for _, p in PAIRS]
    scores = xlmr.score([("what is panda?", p) for p in passages])
    hits = xlmr.rank("what is panda?", passages)
    assert all(isinstance(h, Hit) for h in hits)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert [h.score for h in hits] == sorted(scores, reverse=True)
    assert [h.text for h in hits] == [passages[int(h.id)] for h in hits]
    top = xlmr.rank("what is panda?", passages, top_k=2, ids=["a", "b", "c", "d", "e"])
    assert [h.id for h in top] == ["abcde"[int(h.id)] for h in hits[:2]]
    assert xlmr.rank("q", []) == []
    with pytest.raises(TypeError, match="passages"):
        xlmr.rank("q", "one passage")
    with pytest.raises(ValueError, match="top_k"):
        xlmr.rank("q", ["p"], top_k=0)


def test_rank_scores_ties_keep_input_order():
    hits = rank_scores([1.0, 2.0, 1.0], ["a", "b", "c"])
    assert [(h.id, h.rank) for h in hits] == [("1", 1), ("0", 2), ("2", 3)]
    with pytest.raises(ValueError, match="ids"):
        rank_scores([1.0], ["a"], ids=["x", "y"])


def test_native_reranker_uses_the_table_defaults(llm):
    rr = Reranker(LLM, devices="cpu")
    assert rr.kind == "llm" and rr.query_instruction == "A: " and rr.passage_instruction == "B: "
    assert np.allclose(rr.score(PAIRS), llm.compute_score(PAIRS), atol=1e-6)
    with pytest.raises(ValueError, match="layerwise"):
        Reranker(str(GOLDEN / "models" / "layerwise-reranker"))


def test_lazy_public_names():
    import bgekit

    assert bgekit.FlagReranker is FlagReranker and bgekit.Reranker is Reranker
    assert bgekit.FlagAutoReranker is FlagAutoReranker
    assert registry.RERANKERS is RERANKERS


def test_two_devices_give_the_same_scores(xlmr, llm):
    two = FlagReranker(XLMR, devices=["cpu", "cpu"])
    assert np.allclose(two.compute_score(PAIRS), xlmr.compute_score(PAIRS), atol=1e-6)
    two = FlagLLMReranker(LLM, devices=["cpu", "cpu"])
    assert np.allclose(two.compute_score(PAIRS), llm.compute_score(PAIRS), atol=1e-4)


def test_reranker_pickles_for_worker_processes(llm):
    import pickle

    copy = pickle.loads(pickle.dumps(llm))
    assert np.allclose(copy.compute_score(PAIRS[:2]), llm.compute_score(PAIRS[:2]), atol=1e-6)
