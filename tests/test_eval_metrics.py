"""Metrics: pytrec_eval against hand-worked values, tie order, missing queries, STS, reranking, QA recall."""
import math

import numpy as np
import pytest

from bgekit.eval.metrics import (average_precision, evaluate_run, has_answer, qa_recall, ranked, reranking_scores,
                                 sts_spearman)

# q1: judged d1 (grade 2), d3 (grade 1), d4 (grade 0 = not relevant). Ranking: d2, d1, d4, d3.
QRELS = {"q1": {"d1": 2, "d3": 1, "d4": 0}}
RUN = {"q1": {"d2": 0.9, "d1": 0.8, "d4": 0.7, "d3": 0.6}}


def test_hand_worked_single_query():
    m = evaluate_run(QRELS, RUN, k_values=[1, 2, 4])
    # precision@k = relevant in top k / k: top1 {d2} -> 0; top2 {d2,d1} -> 1/2; top4 -> 2/4
    assert m["precision@1"] == 0.0 and m["precision@2"] == 0.5 and m["precision@4"] == 0.5
    # recall@k = relevant in top k / 2 relevant
    assert m["recall@1"] == 0.0 and m["recall@2"] == 0.5 and m["recall@4"] == 1.0
    # first relevant document (d1) is at rank 2
    assert m["mrr@1"] == 0.0 and m["mrr@2"] == 0.5 and m["mrr@4"] == 0.5
    # nDCG (trec_eval: linear gain = grade, discount log2(rank + 1)):
    # DCG@4 = 2/log2(3) + 1/log2(5); ideal order d1, d3: IDCG@4 = 2/log2(2) + 1/log2(3)
    dcg4 = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg@4"] == pytest.approx(dcg4 / idcg, abs=1e-12)          # 0.64332...
    # DCG@2 = 2/log2(3); IDCG@2 = 2 + 1/log2(3)
    assert m["ndcg@2"] == pytest.approx((2 / math.log2(3)) / idcg, abs=1e-12)
    assert m["ndcg@1"] == 0.0
    # MAP@k: mean over the 2 relevant documents of precision at each relevant rank within k
    # @4: (P@2 = 1/2 for d1) + (P@4 = 2/4 for d3) -> (0.5 + 0.5) / 2; @2: only d1 -> 0.5 / 2
    assert m["map@4"] == pytest.approx(0.5) and m["map@2"] == pytest.approx(0.25)


def test_mean_counts_queries_without_results_as_zero():
    qrels = {**QRELS, "q2": {"d5": 1}}
    run = {**RUN, "q2": {}, "q9": {"d5": 1.0}}   # q2 retrieved nothing; q9 is not judged and is ignored
    m = evaluate_run(qrels, run, k_values=[4], metrics=["recall", "mrr"], per_query=True)
    assert m["recall@4"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["mrr@4"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["per_query"]["recall@4"] == {"q1": 1.0, "q2": 0.0}


def test_ties_follow_trec_eval_doc_id_descending():
    # equal scores: trec_eval ranks the larger doc id first, so d2 precedes d1 whatever the dict order
    for run in ({"q": {"d1": 0.5, "d2": 0.5}}, {"q": {"d2": 0.5, "d1": 0.5}}):
        assert ranked(run["q"]) == ["d2", "d1"]
        m = evaluate_run({"q": {"d1": 1}}, run, k_values=[1, 2], metrics=["mrr", "precision"])
        assert m["mrr@1"] == 0.0 and m["mrr@2"] == 0.5 and m["precision@1"] == 0.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_run(QRELS, RUN, metrics=["ndcg", "f1"])
    with pytest.raises(ValueError, match="positive integers"):
        evaluate_run(QRELS, RUN, k_values=[0, 10])
    with pytest.raises(ValueError, match="qrels are empty"):
        evaluate_run({}, RUN)


def test_sts_spearman_hand_worked():
    angles = np.arccos([1.0, 0.5, 0.0, -0.5])              # cosines 1, .5, 0, -.5 -> ranks 4, 3, 2, 1
    a = np.tile([1.0, 0.0], (4, 1))
    b = np.stack([np.cos(angles), np.sin(angles)], 1) * 3.0  # scale must not matter
    gold = [4, 3, 1, 2]                                      # ranks 4, 3, 1, 2: d = 0, 0, 1, -1
    # Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / (4 * 15) = 0.8
    assert sts_spearman(a, b, gold)["cosine_spearman"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="two \\(N, D\\) arrays of one shape"):
        sts_spearman(a, b[:3], gold)


def test_reranking_map_and_mrr_hand_worked():
    # sample 1: relevant [1,0,1,0], scores [.9,.9,.5,.1]; the tie at .9 is one cut:
    #   cut .9: 1 hit of 2 -> P=1/2, R=1/2; cut .5: P=2/3, R=1 -> AP = .5*.5 + .5*(2/3) = 0.58333
    #   MRR: stable order puts candidate 0 (relevant) first -> 1
    # sample 2: relevant [0,0,1], scores [.3,.2,.1] -> AP = 1/3, MRR = 1/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    s = reranking_scores([([1, 0, 1, 0], [0.9, 0.9, 0.5, 0.1]), ([0, 0, 1], [0.3, 0.2, 0.1])])
    assert s["map"] == pytest.approx((0.5 * 0.5 + 0.5 * 2 / 3 + 1 / 3) / 2)
    assert s["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    assert average_precision([0, 0], [0.1, 0.2]) == 0.0


def test_qa_recall_matches_answer_tokens():
    assert has_answer("The capital is Paris.", ["paris"])
    assert not has_answer("Parisian cafés", ["Paris"])        # whole tokens only
    texts = {"q1": ["London is big", "The capital is Paris."], "q2": ["nothing here"]}
    r = qa_recall(texts, {"q1": ["Paris"], "q2": ["Rome"]}, k_values=[1, 2])
    assert r == {"qa_recall@1": 0.0, "qa_recall@2": 0.5}
