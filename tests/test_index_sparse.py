"""SparseIndex: inverted-index search equals brute-force lexical matching; padding; errors."""
import numpy as np
import pytest

from bgekit.index.sparse import SparseIndex
from bgekit.types import SparseVector


def lexical(q: dict, d: dict) -> float:
    return sum(w * d[t] for t, w in q.items() if t in d)


def test_search_matches_brute_force_lexical_scores():
    rng = np.random.default_rng(0)
    docs = [{str(t): float(rng.random()) for t in rng.choice(50, size=5, replace=False)} for _ in range(40)]
    queries = [{str(t): float(rng.random()) for t in rng.choice(50, size=3, replace=False)} for _ in range(37)]
    index = SparseIndex.from_vectors(docs)
    scores, ids = index.search(queries, k=5)  # 37 queries: three blocks of QUERY_BLOCK (16), the last one partial
    for qi, q in enumerate(queries):
        brute = np.array([lexical(q, d) for d in docs], dtype=np.float32)
        for s, i in zip(scores[qi], ids[qi]):
            if i >= 0:
                assert s == pytest.approx(brute[i], rel=1e-5)
        n_match = int((brute > 0).sum())
        assert (ids[qi] >= 0).sum() == min(5, n_match)
        top = sorted(range(40), key=lambda j: (-brute[j], j))[: min(5, n_match)]
        assert ids[qi][: len(top)].tolist() == top
    np.testing.assert_allclose(index.score(queries, ids), scores, rtol=1e-5)


def test_non_matching_documents_are_padding_and_sparsevector_input():
    index = SparseIndex.from_vectors([SparseVector.from_dict({"1": 1.0}), {"2": 1.0}, {"3": 0.5, "1": 0.5}])
    scores, ids = index.search([{"1": 2.0, "999": 1.0}], k=3)   # 999 is beyond the vocabulary: ignored
    assert ids.tolist() == [[0, 2, -1]] and scores[0, :2].tolist() == [2.0, 1.0] and scores[0, 2] == -np.inf


def test_ties_break_by_lower_index():
    index = SparseIndex.from_vectors([{"5": 1.0}] * 4)
    assert index.search([{"5": 1.0}], k=2)[1].tolist() == [[0, 1]]


def test_errors():
    index = SparseIndex.from_vectors([{"1": 1.0}])
    with pytest.raises(ValueError, match="larger than the index"):
        index.search([{"1": 1.0}], k=2)
    with pytest.raises(TypeError, match=r"queries\[0\] must be a SparseVector or a dict"):
        index.search(["text"], k=1)
    with pytest.raises(ValueError, match=r"vectors\[0\]"):
        SparseIndex.from_vectors([{"a": 1.0}])
