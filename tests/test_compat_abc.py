"""AbsEmbedder / AbsReranker as FlagEmbedding's docs describe them: a subclass implements the single-device method
and inherits instructions, encode* / compute_score, several devices and the pool methods."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bgekit import AbsEmbedder, AbsReranker

pytestmark = pytest.mark.usefixtures("one_thread")


class CharCounts(AbsEmbedder):
    """A user embedder: letter counts a..z of the first max_length characters, L2-normalised."""

    def encode_single_device(self, sentences, batch_size=256, max_length=512, convert_to_numpy=True, device=None,
                             **kwargs):
        assert not kwargs, kwargs
        one = isinstance(sentences, str)
        rows = []
        for text in [sentences] if one else sentences:
            v = np.zeros(26)
            for ch in text.lower()[:max_length]:
                if "a" <= ch <= "z":
                    v[ord(ch) - 97] += 1
            rows.append(v / max(np.linalg.norm(v), 1e-9) if self.normalize_embeddings else v)
        out = np.array(rows, dtype=np.float32)
        return out[0] if one else out


class WordOverlap(AbsReranker):
    """A user reranker: the number of shared lower-case words."""

    def compute_score_single_gpu(self, sentence_pairs, batch_size=256, query_max_length=None, max_length=512,
                                 normalize=False, device=None, **kwargs):
        scores = [float(len(set(q.lower().split()) & set(p.lower().split()))) for q, p in sentence_pairs]
        return [1 / (1 + np.exp(-s)) for s in scores] if normalize else scores


TEXTS = ["the cat sat", "dogs bark", "a", "Cats and dogs", "zebra"]


def test_subclass_gets_encode_queries_and_corpus_with_instructions():
    model = CharCounts("none", devices="cpu", query_instruction_for_retrieval="q ", query_instruction_format="{}:{}",
                       passage_instruction_for_retrieval="p ", normalize_embeddings=False)
    np.testing.assert_array_equal(model.encode_queries(TEXTS), model.encode([f"q :{t}" for t in TEXTS]))
    np.testing.assert_array_equal(model.encode_corpus(TEXTS), model.encode([f"p {t}" for t in TEXTS]))
    assert model.encode("abc").shape == (26,)
    assert model.encode(TEXTS, max_length=1)[0].sum() == 1  # "t" only
    with pytest.raises(TypeError, match="normalise_embeddings"):
        CharCounts("none", normalise_embeddings=False)
    with pytest.raises(TypeError, match="abstract method encode_single_device"):  # required, as in FlagEmbedding
        type("NoMethod", (AbsEmbedder,), {})("none")


def test_subclass_gets_several_devices_and_pools():
    model = CharCounts("none", devices=["cpu", "cpu"])
    single = CharCounts("none", devices="cpu").encode(TEXTS)
    np.testing.assert_allclose(model.encode(TEXTS), single)  # through the pool started on first use
    assert model.pool is not None and model.pool["devices"] == ["cpu", "cpu"]
    model.stop_self_pool()
    assert model.pool is None
    pool = model.start_multi_process_pool(AbsEmbedder._encode_multi_process_worker)
    np.testing.assert_allclose(model.encode_multi_process(TEXTS, pool, max_length=3),
                               CharCounts("none", devices="cpu").encode(TEXTS, max_length=3))
    model.stop_multi_process_pool(pool)


def test_reranker_subclass_gets_compute_score_instructions_and_devices():
    rr = WordOverlap("none", devices="cpu", query_instruction_for_rerank="dogs ", passage_instruction_format="{}{}")
    assert rr.compute_score(["cats", "cats and dogs"]) == [2.0]  # "dogs cats" vs "cats and dogs"
    # "dogs a b" vs "b c" share one word, "dogs x" vs "y" none
    assert rr.compute_score([["a b", "b c"], ["x", "y"]], normalize=True) == pytest.approx([1 / (1 + np.exp(-1)), 0.5])
    many = [["the cat", "a cat sat"], ["dogs", "cats"], ["a b c", "c b a"]] * 3
    two = WordOverlap("none", devices=["cpu", "cpu"]).compute_score(many)
    assert isinstance(two, np.ndarray)  # several devices give an array, as in FlagEmbedding
    np.testing.assert_array_equal(two, WordOverlap("none", devices="cpu").compute_score(many))


def test_reranker_base_accepts_the_documented_passage_max_length(monkeypatch):
    from bgekit.compat import abstract

    monkeypatch.setattr(abstract, "_ONCE", set())
    with pytest.warns(UserWarning, match="passage_max_length has no effect"):
        rr = WordOverlap("none", devices="cpu", passage_max_length=512)
    assert rr.max_length == 512
    with pytest.raises(TypeError, match="passage_length"):
        WordOverlap("none", passage_length=512)


def test_inference_module_paths_import_light():
    code = ("import sys, bgekit.inference, bgekit.inference.embedder, bgekit.inference.reranker, bgekit.abc.inference; "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
