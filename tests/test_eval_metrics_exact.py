"""STS scoring uses the cosine (not the dot product) of each pair and reports Pearson as well as Spearman; QA
answer matching finds answers at either end of a passage."""
import numpy as np
import pytest

from bgekit.eval.metrics import sts_spearman


def test_sts_uses_cosine_whatever_the_row_norms():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    gold = cos + np.array([0.3, -0.2, 0.1, 0.0, -0.1, 0.25])  # correlated with the cosines, not equal to them
    scale = np.array([1.0, 9.0, 0.2, 4.0, 0.05, 2.5])[:, None]  # very different norms per row
    dot = (a * scale * b).sum(1)
    # with these norms the dot product ranks the pairs differently from the cosine
    assert np.argsort(dot).tolist() != np.argsort(cos).tolist()
    out = sts_spearman(a * scale, b, gold)
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 - no ties here
    assert out["cosine_spearman"] == pytest.approx(np.corrcoef(rank(cos), rank(gold))[0, 1], abs=1e-12)
    assert out["cosine_pearson"] == pytest.approx(np.corrcoef(cos, gold)[0, 1], abs=1e-12)


def test_has_answer_at_the_very_end_and_start_of_the_text():
    from bgekit.eval.metrics import has_answer, qa_recall

    assert has_answer("the capital of France is Paris", ["Paris"])        # last token
    assert has_answer("Paris is the capital", ["paris"])                   # first token
    assert has_answer("it is New York", ["new york"])                      # a two-token answer ending the text
    assert has_answer("New York", ["new york"])                            # the whole text
    assert not has_answer("New", ["new york"])                             # longer than the text
    assert qa_recall({"q": ["nothing here", "it is Paris"]}, {"q": ["Paris"]}, k_values=(1, 2)) == \
        {"qa_recall@1": 0.0, "qa_recall@2": 1.0}
