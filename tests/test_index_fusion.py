"""Fusion: RRF and weighted sum, hand-worked."""
import numpy as np
import pytest

from bgekit.index.fusion import fuse, rrf, weighted_sum

DENSE = (np.array([[0.9, 0.5, -np.inf]]), np.array([[3, 1, -1]]))   # doc 3 then doc 1 (then padding)
SPARSE = (np.array([[7.0, 2.0, 1.0]]), np.array([[1, 2, 4]]))


def test_rrf_hand_worked():
    scores, ids = rrf([DENSE, SPARSE], k=60)
    # doc1: 1/(60+2) + 1/(60+1); doc3: 1/61; doc2: 1/62; doc4: 1/63
    assert ids.tolist() == [[1, 3, 2, 4]]
    assert scores[0, 0] == pytest.approx(1 / 62 + 1 / 61) and scores[0, 3] == pytest.approx(1 / 63)
    assert rrf([DENSE, SPARSE], top_k=2)[1].tolist() == [[1, 3]]


def test_weighted_sum_with_missing_scores():
    # weights 1 and 0.1; "min" fills a list's gap with its lowest score for the query
    # doc1: .5 + .1*7 = 1.2; doc3: .9 + .1*1 (sparse min) = 1.0; doc2: .5 (dense min) + .2 = .7; doc4: .5 + .1 = .6
    scores, ids = weighted_sum([DENSE, SPARSE], weights=[1.0, 0.1])
    assert ids.tolist() == [[1, 3, 2, 4]]
    np.testing.assert_allclose(scores[0], [1.2, 1.0, 0.7, 0.6], rtol=1e-6)
    # "zero": doc3 = .9, doc1 = 1.2, doc2 = .2, doc4 = .1
    assert weighted_sum([DENSE, SPARSE], [1.0, 0.1], missing="zero")[1].tolist() == [[1, 3, 2, 4]]
    np.testing.assert_allclose(weighted_sum([DENSE, SPARSE], [1.0, 0.1], missing="zero")[0][0], [1.2, 0.9, 0.2, 0.1], rtol=1e-6)


def test_dispatch_and_errors():
    assert fuse("rrf", [DENSE])[1].tolist() == [[3, 1]]
    with pytest.raises(ValueError, match="unknown fusion 'max'; valid: rrf, weighted_sum"):
        fuse("max", [DENSE])
    with pytest.raises(ValueError, match="2 weights for 1 lists"):
        weighted_sum([DENSE], [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown missing"):
        weighted_sum([DENSE], [1.0], missing="max")
    with pytest.raises(ValueError, match="same number of queries"):
        rrf([DENSE, (np.zeros((2, 1)), np.zeros((2, 1), int))])
    with pytest.raises(TypeError, match="unexpected keyword"):
        fuse("rrf", [DENSE], weights=[1.0])
