"""Pure scoring functions (bgekit.scoring) and the lexical-weight reduction of bgekit.heads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bgekit import scoring
from bgekit.heads import lexical_weights
from bgekit.types import SparseVector


def test_dense_scores_is_a_matrix_of_inner_products():
    q = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    p = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    s = scoring.dense_scores(q, p)
    assert s.shape == (2, 3) and s.dtype == np.float32
    np.testing.assert_allclose(s, [[0.0, 1.0, 0.6], [0.8, 0.6, 1.0]], atol=1e-7)
    np.testing.assert_allclose(scoring.dense_scores(torch.from_numpy(q), p), s)


def test_lexical_score_on_dicts_and_sparse_vectors():
    a, b = {"5": 0.5, "9": 2.0, "11": 1.0}, {"9": 0.25, "11": 3.0, "70": 4.0}
    assert scoring.lexical_score(a, b) == pytest.approx(0.5 + 3.0)
    assert scoring.lexical_score(b, a) == pytest.approx(3.5)
    va, vb = SparseVector.from_dict(a), SparseVector.from_dict(b)
    assert scoring.lexical_score(va, vb) == pytest.approx(3.5)
    assert scoring.lexical_score(va, b) == pytest.approx(3.5)  # mixed forms
    assert scoring.lexical_score({5: 1.0}, {"5": 2.0}) == 2.0  # int keys compare as their string form
    assert scoring.lexical_score(a, {"1": 1.0}) == 0.0
    assert scoring.lexical_score({}, {}) == 0.0
    with pytest.raises(TypeError, match="SparseVector"):
        scoring.lexical_score(a, [("9", 1.0)])


def test_lexical_scores_matrix_is_float64():
    rows = [{"1": 1.0}, {"2": 2.0, "1": 0.5}]
    m = scoring.lexical_scores(rows, rows + [{}])
    assert m.dtype == np.float64 and m.shape == (2, 3)
    np.testing.assert_allclose(m, [[1.0, 0.5, 0.0], [0.5, 4.25, 0.0]])
    assert scoring.lexical_scores([], rows).shape == (0, 2)


def test_maxsim_is_the_mean_of_per_query_token_maxima():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    p = np.array([[0.5, 0.5], [0.9, -0.1]], dtype=np.float32)
    assert scoring.maxsim(q, p) == pytest.approx((0.9 + 0.5) / 2)
    assert scoring.maxsim(torch.from_numpy(q), torch.from_numpy(p)) == pytest.approx(0.7)


def test_maxsim_keeps_negative_similarities():
    """No padding, no clipping at 0: a query token whose every similarity is negative contributes its best one."""
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    p = np.array([[-1.0, 0.0], [-0.5, 0.5]], dtype=np.float32)
    assert scoring.maxsim(q, p) == pytest.approx(-0.5)


def test_maxsim_edge_cases():
    assert scoring.maxsim(np.zeros((0, 4)), np.ones((3, 4))) == 0.0
    assert scoring.maxsim(np.ones((2, 4)), np.zeros((0, 4))) == 0.0
    with pytest.raises(ValueError, match=r"\(m, d\)"):
        scoring.maxsim(np.ones((2, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"got \(4,\) and \(3, 4\)"):
        scoring.maxsim(np.ones(4), np.ones((3, 4)))


def test_check_weights():
    assert scoring.check_weights(None) == {"dense": 1.0, "sparse": 1.0, "colbert": 1.0}
    assert scoring.check_weights([0.4, 0.2, 0.4]) == {"dense": 0.4, "sparse": 0.2, "colbert": 0.4}
    for bad in ([1, 1], "abc", [1, "x", 1], [1, True, 1], 3):
        with pytest.raises(ValueError, match="weights_for_different_modes"):
            scoring.check_weights(bad)


def test_fuse_gives_every_mode_as_weighted_means():
    scores = {"dense": [0.5, 1.0], "sparse": [0.1, 0.0], "colbert": [0.8, -0.2]}
    out = scoring.fuse(scores, scoring.check_weights([0.4, 0.2, 0.4]))
    assert list(out) == ["colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"]
    np.testing.assert_allclose(out["dense"], [0.5, 1.0])
    np.testing.assert_allclose(out["sparse+dense"], [(0.2 * 0.1 + 0.4 * 0.5) / 0.6, (0.4 * 1.0) / 0.6])
    np.testing.assert_allclose(out["colbert+sparse+dense"], [0.4 * 0.8 + 0.02 + 0.2, -0.08 + 0.4])
    assert all(v.dtype == np.float64 for v in out.values())
    with pytest.raises(ValueError, match="sum to 0"):
        scoring.fuse(scores, scoring.check_weights([1.0, -1.0, 0.5]))


def test_lexical_weights_reduction():
    ids = np.array([0, 7, 3, 7, 5, 9, 2, 1])
    w = np.array([0.9, 0.2, 0.8, 0.6, 0.0, 0.3, 0.7, 0.5], dtype=np.float32)
    vec, order = lexical_weights(ids, w, skip_ids={0, 1, 2, 3})
    assert vec.indices.tolist() == [7, 9]  # specials and weight 0 dropped
    assert vec.values.tolist() == pytest.approx([0.6, 0.3])  # max over repeats
    assert [int(vec.indices[k]) for k in order] == [7, 9]
    vec, order = lexical_weights(np.array([12, 4, 12]), np.array([0.1, 0.2, 0.3]), skip_ids=set())
    assert [int(vec.indices[k]) for k in order] == [12, 4]  # first-occurrence order
    empty, order = lexical_weights(np.array([0, 2]), np.array([1.0, 1.0]), skip_ids={0, 2})
    assert len(empty) == 0 and len(order) == 0 and empty.indices.dtype == np.int64
