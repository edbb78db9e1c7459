"""Results files: atomic JSON, a markdown table across datasets and runs, and a PNG of recall@k / nDCG@k.

A *report* is the dict :func:`bgekit.eval.runner.make_report` builds (what ``bgekit eval beir --output``
writes). Reports from several runs can be compared in one table and one plot.

Example:
    >>> rows = [("bm25", {"model": None, "datasets": {"scifact": {"splits": {"test": {"metrics": {"ndcg@10": 0.676}}}}}})]
    >>> print(markdown_table(rows, metrics=["ndcg@10"]))
    | run | dataset | split | ndcg@10 |
    |---|---|---|---|
    | bm25 | scifact | test | 0.6760 |
"""
from __future__ import annotations

import io
import json
import os
import re
from typing import Any, Sequence

from bgekit.errors import InputError
from bgekit.io import atomic_open, atomic_write_text

DEFAULT_TABLE_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map@10", "precision@10")


def write_json(path: str, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON, atomically (a crash never leaves half a file)."""
    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"results file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            report = json.load(f)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(report, dict) or "datasets" not in report:
        raise InputError(f"{path}: not a bgekit results file (no 'datasets' key)")
    return report


def run_label(report: dict[str, Any]) -> str:
    """A short name for a run: model (+ reranker), retrieval mode and dtype."""
    model = (report.get("model") or {}).get("name") or "bm25"
    label = os.path.basename(str(model).rstrip("/"))
    retrieval = (report.get("config") or {}).get("retrieval")
    if retrieval and retrieval not in ("dense", "bm25"):
        label += f" [{retrieval}]"
    dtype = (report.get("model") or {}).get("dtype")
    if dtype and dtype != "float32":
        label += f" ({dtype})"
    if report.get("reranker"):
        label += f" + {os.path.basename(str(report['reranker'].get('name')).rstrip('/'))}"
    return label


def _rows(runs: Sequence[tuple[str, dict]]):
    for label, report in runs:
        for name, entry in report.get("datasets", {}).items():
            for split, result in entry.get("splits", {}).items():
                yield label, name, split, result.get("metrics", {})


def markdown_table(runs: Sequence[tuple[str, dict]], metrics: Sequence[str] = DEFAULT_TABLE_METRICS,
                   digits: int = 4) -> str:
    """One row per (run, dataset, split), one column per metric; a metric a run lacks shows as "-".

    Args:
        runs: ``(label, report)`` pairs.
        metrics: metric keys, e.g. ["ndcg@10", "recall@100"].
        digits: decimals shown.
    """
    head = "| run | dataset | split | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (3 + len(metrics))]
    for label, name, split, values in _rows(runs):
        cells = [f"{values[m]:.{digits}f}" if isinstance(values.get(m), (int, float)) else "-" for m in metrics]
        lines.append(f"| {label} | {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve(values: dict[str, float], metric: str) -> tuple[list[int], list[float]]:
    """``(ks, scores)`` for keys like ``recall@k``, sorted by k."""
    pattern = re.compile(rf"^{re.escape(metric)}@(\d+)$")
    points = sorted((int(m.group(1)), v) for key, v in values.items() if (m := pattern.match(key)))
    return [k for k, _ in points], [v for _, v in points]


def plot_curves(runs: Sequence[tuple[str, dict]], path: str, metrics: Sequence[str] = ("recall", "ndcg")) -> None:
    """Save a PNG with one panel per metric (x: k, log scale; y: score), one line per (run, dataset, split).

    matplotlib is imported here, so importing this module stays light. The figure is drawn on its own Agg canvas,
    not through pyplot: the process's (a notebook's) matplotlib backend is left as it was.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'bgekit[eval]'") from e
    rows = list(_rows(runs))
    if not rows:
        raise ValueError("nothing to plot: the reports hold no results")
    fig = Figure(figsize=(5.5 * len(metrics), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, name, split, values in rows:
            ks, ys = curve(values, metric)
            if ks:
                ax.plot(ks, ys, marker="o", label=f"{label} / {name} {split}")
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel(f"{metric}@k")
        ax.set_title(f"{metric}@k")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
