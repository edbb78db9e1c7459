"""Metrics and summaries as FlagEmbedding's evaluation writes them.

Keys are ``ndcg_at_10``, ``map_at_10``, ``recall_at_10``, ``precision_at_10``, ``mrr_at_10``,
``recall_cap_at_10`` (``qa_recall_at_20`` for MKQA), each rounded to 5 decimals; nDCG, MAP, recall and
precision are pytrec_eval's averaged over the evaluated queries, MRR and capped recall over all judged queries.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

from bgekit.io import atomic_write_text

FAMILIES = {"ndcg": ("ndcg_cut", "ndcg_cut_"), "map": ("map_cut", "map_cut_"), "recall": ("recall", "recall_"),
            "precision": ("P", "P_")}
PREFIXES = ("ndcg", "map", "recall", "precision", "mrr", "recall_cap", "qa_recall")


def _top(run_q: Mapping[str, float], k: int) -> list[str]:
    return [d for d, _ in sorted(run_q.items(), key=lambda x: x[1], reverse=True)[:k]]


def retrieval_metrics(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
                      k_values: Sequence[int]) -> dict[str, float]:
    """All six metric families at every cutoff, FlagEmbedding's way (see the module docstring)."""
    import pytrec_eval

    from bgekit.eval.metrics import check_k_values

    ks = check_k_values(list(k_values))
    qrels = {str(q): {str(d): int(r) for d, r in j.items()} for q, j in qrels.items()}
    run = {str(q): {str(d): float(s) for d, s in res.items()} for q, res in run.items() if str(q) in qrels}
    cut = ",".join(map(str, ks))
    scores = pytrec_eval.RelevanceEvaluator(qrels, {f"{m}.{cut}" for m, _ in FAMILIES.values()}).evaluate(run)
    out: dict[str, float] = {}
    for name, (_, key) in FAMILIES.items():
        for k in ks:
            values = [s[f"{key}{k}"] for s in scores.values()]
            out[f"{name}_at_{k}"] = round(sum(values) / len(values), 5) if values else 0.0
    for k in ks:
        rr = cap = 0.0
        for q, res in run.items():
            relevant = {d for d, r in qrels[q].items() if r > 0}
            top = _top(res, k)
            rr += next((1.0 / i for i, d in enumerate(top, 1) if d in relevant), 0.0)
            cap += sum(d in relevant for d in top) / min(len(relevant), k) if relevant else 0.0
        out[f"mrr_at_{k}"] = round(rr / len(qrels), 5)
        out[f"recall_cap_at_{k}"] = round(cap / len(qrels), 5)
    order = [f"{p}_at_{k}" for p in ("ndcg", "map", "recall", "precision", "mrr", "recall_cap") for k in ks]
    return {key: out[key] for key in order}


def qa_metrics(doc_texts: Mapping[str, str], answers: Mapping[str, Sequence[str]],
               run: Mapping[str, Mapping[str, float]], k_values: Sequence[int]) -> dict[str, float]:
    """MKQA's answer recall: ``qa_recall_at_K`` over the queries of ``run``."""
    from bgekit.eval.metrics import check_k_values, qa_recall

    ks = check_k_values(list(k_values))
    ranked = {q: [doc_texts[d] for d in _top(res, ks[-1])] for q, res in run.items()}
    values = qa_recall(ranked, {q: answers[q] for q in run if q in answers}, ks)
    return {f"qa_recall_at_{k}": values[f"qa_recall@{k}"] for k in ks}


def check_metric_names(metrics: Sequence[str], k_values: Sequence[int]) -> None:
    """``--eval_metrics`` must name metrics that exist at the given ``--k_values``."""
    valid = [f"{p}_at_{k}" for p in PREFIXES for k in k_values]
    bad = [m for m in metrics if m not in valid]
    if bad:
        raise ValueError(f"--eval_metrics {' '.join(bad)}: not computed with --k_values {' '.join(map(str, k_values))}; "
                         f"valid: {', '.join(valid)}")


def write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=4, ensure_ascii=False))


def collect(search_results_dir: str) -> dict[str, dict[str, dict]]:
    """``{model: {reranker: eval_results}}`` from every ``<model>/<reranker>/EVAL/eval_results.json`` below a folder."""
    out: dict[str, dict[str, dict]] = {}
    if not os.path.isdir(search_results_dir):
        return out
    for model in sorted(os.listdir(search_results_dir)):
        model_dir = os.path.join(search_results_dir, model)
        if not os.path.isdir(model_dir):
            continue
        for reranker in sorted(os.listdir(model_dir)):
            path = os.path.join(model_dir, reranker, "EVAL", "eval_results.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    out.setdefault(model, {})[reranker] = json.load(f)
    return out


def markdown(results: dict[str, dict[str, dict]], metrics: Sequence[str]) -> str:
    """One table per metric: rows (model, reranker), columns average + every dataset-split, values x100, best bold."""
    lines = []
    for metric in [metrics] if isinstance(metrics, str) else metrics:
        rows = [(m, r, {split: vals.get(metric) for split, vals in res.items()})
                for m, by_reranker in results.items() for r, res in by_reranker.items()]
        splits = sorted({s for _, _, v in rows for s in v})
        table = []
        for m, r, values in rows:
            cells = [values.get(s) for s in splits]
            average = None if any(c is None for c in cells) or not cells else sum(cells) / len(cells)
            table.append((m, r, [average] + cells))
        best = [max((row[2][i] for row in table if row[2][i] is not None), default=None) for i in range(len(splits) + 1)]
        lines += [f"## {metric}", "", f"| Model | Reranker | {' | '.join(['average'] + splits)} |",
                  f"| :---- | :---- | {' | '.join([':---:'] * (len(splits) + 1))} |"]
        for m, r, cells in table:
            shown = ["-" if v is None else (f"**{v * 100:.3f}**" if v == best[i] else f"{v * 100:.3f}")
                     for i, v in enumerate(cells)]
            lines.append(f"| {m} | {r} | {' | '.join(shown)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_summary(search_results_dir: str, method: str, path: str, metrics: Sequence[str]) -> dict:
    """Write the json or markdown summary of every model/reranker result below ``search_results_dir``."""
    results = collect(search_results_dir)
    if method == "json":
        write_json(path, results)
    elif method == "markdown":
        atomic_write_text(path, markdown(results, metrics))
    else:
        raise ValueError(f"--eval_output_method {method!r}; valid: json, markdown")
    return results
