"""Retrieval metrics through pytrec_eval (trec_eval's own code), plus STS, reranking and QA-recall scores.

Conventions, as in trec_eval / BEIR / MTEB:

- A run maps ``query id -> {doc id: score}``. Ranks come from the scores; ties are ordered by doc id,
  descending (trec_eval's rule), so the ranking never depends on dict order.
- A document is relevant when its qrels relevance is >= 1; nDCG uses the graded relevance.
- ``mrr@k`` is the reciprocal rank of the first relevant document within the top k (0 if none).
- The mean runs over every query in the qrels. A query the run has no results for scores 0 (trec_eval's
  ``-c``); BEIR and MTEB instead leave such a query out of the mean, which is only different when a query
  retrieves nothing at all.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Mapping, Sequence

import numpy as np

# our name -> pytrec_eval measure (with cutoffs) and its result-key prefix
RETRIEVAL_METRICS = {
    "ndcg": ("ndcg_cut", "ndcg_cut_"),
    "map": ("map_cut", "map_cut_"),
    "recall": ("recall", "recall_"),
    "precision": ("P", "P_"),
    "mrr": ("recip_rank", "recip_rank"),  # cut by truncating the run, see below
}
DEFAULT_K = (1, 3, 5, 10, 100, 1000)


def _pytrec_eval():
    try:
        import pytrec_eval
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("retrieval metrics need pytrec_eval: pip install 'bgekit[eval]' (pytrec-eval-terrier)") from e
    return pytrec_eval


def check_k_values(k_values: Any) -> list[int]:
    if isinstance(k_values, int) and not isinstance(k_values, bool):
        k_values = [k_values]
    if not isinstance(k_values, (list, tuple)) or not k_values:
        raise ValueError(f"k_values must be a non-empty list of positive integers, got {k_values!r}")
    for k in k_values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k_values must hold positive integers, got {k!r}")
    return sorted({int(k) for k in k_values})


def ranked(run_q: Mapping[str, float]) -> list[str]:
    """Doc ids of one query's results in trec_eval order: score descending, then doc id descending."""
    return [d for d, _ in sorted(run_q.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def evaluate_run(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
                 k_values: Sequence[int] = DEFAULT_K, metrics: Sequence[str] = tuple(RETRIEVAL_METRICS),
                 per_query: bool = False) -> dict[str, Any]:
    """Mean retrieval metrics of ``run`` against ``qrels``.

    Args:
        qrels: query id -> {doc id: relevance}.
        run: query id -> {doc id: score} (queries not in qrels are ignored).
        k_values: cutoffs, e.g. [1, 10, 100].
        metrics: any of "ndcg", "map", "recall", "precision", "mrr".
        per_query: also return ``"per_query": {metric: {query id: value}}``.

    Returns:
        ``{"ndcg@10": 0.65, "recall@100": 0.92, ...}`` (floats), plus "per_query" when asked.

    Example:
        >>> evaluate_run({"q": {"a": 1}}, {"q": {"b": 0.9, "a": 0.5}}, k_values=[1, 2], metrics=["mrr"])
        {'mrr@1': 0.0, 'mrr@2': 0.5}
    """
    ks = check_k_values(k_values)
    unknown = [m for m in metrics if m not in RETRIEVAL_METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; valid: {', '.join(RETRIEVAL_METRICS)}")
    if not qrels:
        raise ValueError("qrels are empty: there is nothing to evaluate")
    pytrec_eval = _pytrec_eval()
    qrels = {str(q): {str(d): int(r) for d, r in judged.items()} for q, judged in qrels.items()}
    run = {str(q): {str(d): float(s) for d, s in res.items()} for q, res in run.items() if q in qrels and res}
    cut = ",".join(map(str, ks))
    values: dict[str, dict[str, float]] = {}
    plain = [m for m in metrics if m != "mrr"]
    if plain:
        measures = {f"{RETRIEVAL_METRICS[m][0]}.{cut}" for m in plain}
        results = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run) if run else {}
        for m in plain:
            for k in ks:
                key = f"{RETRIEVAL_METRICS[m][1]}{k}"
                values[f"{m}@{k}"] = {q: results[q][key] if q in results else 0.0 for q in qrels}
    if "mrr" in metrics:
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
        order_by_query = {q: ranked(res)[: ks[-1]] for q, res in run.items()}
        for k in ks:
            top = {q: {d: run[q][d] for d in docs[:k]} for q, docs in order_by_query.items()}
            results = evaluator.evaluate(top) if top else {}
            values[f"mrr@{k}"] = {q: results[q]["recip_rank"] if q in results else 0.0 for q in qrels}
    order = [f"{m}@{k}" for m in metrics for k in ks]
    out: dict[str, Any] = {name: float(np.mean(list(values[name].values()))) for name in order}
    if per_query:
        out["per_query"] = {name: values[name] for name in order}
    return out


# ---------------------------------------------------------------- STS and reranking (MTEB-style)

def sts_spearman(embeddings1: Any, embeddings2: Any, gold_scores: Sequence[float]) -> dict[str, float]:
    """Spearman (and Pearson) correlation between the cosine similarity of row pairs and gold scores.

    Args:
        embeddings1, embeddings2: (N, D) arrays; row i of each forms pair i.
        gold_scores: N human similarity scores.

    Returns:
        ``{"cosine_spearman": ..., "cosine_pearson": ...}`` (MTEB's main STS score is the Spearman one).
    """
    from scipy.stats import pearsonr, spearmanr

    a, b = np.asarray(embeddings1, dtype=np.float64), np.asarray(embeddings2, dtype=np.float64)
    gold = np.asarray(gold_scores, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or len(gold) != len(a):
        raise ValueError(f"need two (N, D) arrays of one shape and N gold scores; got {a.shape}, {b.shape}, {gold.shape}")
    if len(gold) < 2:
        raise ValueError("a correlation needs at least 2 pairs")
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"cosine_spearman": float(spearmanr(cos, gold)[0]), "cosine_pearson": float(pearsonr(cos, gold)[0])}


def average_precision(relevant: Sequence[bool], scores: Sequence[float]) -> float:
    """Average precision of one ranked candidate list; tied scores count as one cut (as scikit-learn does).

    ``AP = sum over distinct score thresholds t of (R_t - R_prev) * P_t`` with R recall and P precision
    among the candidates scoring >= t.
    """
    rel = np.asarray(relevant, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if rel.shape != s.shape or rel.ndim != 1:
        raise ValueError("relevant and scores must be 1-D and of one length")
    if not rel.any():
        return 0.0
    order = np.argsort(-s, kind="stable")
    s, rel = s[order], rel[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last position of each tie group
    hits = np.cumsum(rel)[last]
    precision, recall = hits / (last + 1), hits / rel.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def reranking_scores(samples: Sequence[tuple[Sequence[bool], Sequence[float]]], mrr_k: int = 10) -> dict[str, float]:
    """MTEB-style reranking scores over samples of ``(is_relevant, predicted_scores)`` candidate lists.

    Returns:
        ``{"map": mean average precision, "mrr@10": mean reciprocal rank of the first relevant candidate
        within the top mrr_k}``. Equal scores keep candidate order for MRR.
    """
    if not samples:
        raise ValueError("reranking_scores needs at least one sample")
    aps, rrs = [], []
    for rel, scores in samples:
        rel_arr = np.asarray(rel, dtype=bool)
        aps.append(average_precision(rel_arr, scores))
        top = rel_arr[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:mrr_k]]
        rrs.append(1.0 / (int(np.argmax(top)) + 1) if top.any() else 0.0)
    return {"map": float(np.mean(aps)), f"mrr@{mrr_k}": float(np.mean(rrs))}


# ---------------------------------------------------------------- QA recall (MKQA)

def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", unicodedata.normalize("NFD", text).lower())


def has_answer(text: str, answers: Sequence[str]) -> bool:
    """True if any answer's token sequence appears contiguously in ``text`` (case- and accent-form-insensitive)."""
    toks = _tokens(text)
    for answer in answers:
        a = _tokens(answer)
        if a and any(toks[i:i + len(a)] == a for i in range(len(toks) - len(a) + 1)):
            return True
    return False


def qa_recall(ranked_texts: Mapping[str, Sequence[str]], answers: Mapping[str, Sequence[str]],
              k_values: Sequence[int] = (20, 100)) -> dict[str, float]:
    """Share of queries with an answer string in their top-k passages (the MKQA / RocketQA recall)."""
    ks = check_k_values(k_values)
    hits = {k: [] for k in ks}
    for q, ans in answers.items():
        texts = list(ranked_texts.get(q, []))
        first = next((i for i, t in enumerate(texts[: ks[-1]]) if has_answer(t, ans)), None)
        for k in ks:
            hits[k].append(first is not None and first < k)
    return {f"qa_recall@{k}": float(np.mean(v)) if v else 0.0 for k, v in hits.items()}
