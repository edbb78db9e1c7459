"""Report: atomic JSON, markdown table across runs, PNG plot of recall@k and nDCG@k."""
import json

import pytest

from bgekit.eval.report import curve, markdown_table, plot_curves, read_json, run_label, write_json


def report(model, dtype, ndcg10):
    return {"model": {"name": model, "dtype": dtype}, "reranker": None, "config": {"retrieval": "dense"},
            "datasets": {"scifact": {"splits": {"test": {"metrics": {
                "ndcg@1": 0.5, "ndcg@10": ndcg10, "ndcg@100": ndcg10 + 0.02, "recall@1": 0.4, "recall@10": 0.8,
                "recall@100": 0.92}}}}}}


def test_markdown_table_and_labels():
    runs = [(run_label(report("all-MiniLM-L6-v2", "float32", 0.6451)), report("all-MiniLM-L6-v2", "float32", 0.6451)),
            (run_label(report("x/all-MiniLM-L6-v2", "bfloat16", 0.6440)), report("x/all-MiniLM-L6-v2", "bfloat16", 0.6440))]
    table = markdown_table(runs, metrics=["ndcg@10", "recall@100", "mrr@10"])
    lines = table.splitlines()
    assert lines[0] == "| run | dataset | split | ndcg@10 | recall@100 | mrr@10 |"
    assert lines[2] == "| all-MiniLM-L6-v2 | scifact | test | 0.6451 | 0.9200 | - |"
    assert lines[3].startswith("| all-MiniLM-L6-v2 (bfloat16) | scifact | test | 0.6440")


def test_curve_and_plot(tmp_path):
    assert curve(report("m", "float32", 0.6)["datasets"]["scifact"]["splits"]["test"]["metrics"], "recall") == ([1, 10, 100], [0.4, 0.8, 0.92])
    path = str(tmp_path / "curves.png")
    plot_curves([("a", report("m", "float32", 0.6)), ("b", report("m", "bfloat16", 0.61))], path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_curves([("a", {"datasets": {}})], str(tmp_path / "empty.png"))


def test_json_roundtrip_and_errors(tmp_path):
    path = str(tmp_path / "r.json")
    write_json(path, report("m", "float32", 0.6))
    assert read_json(path)["datasets"]["scifact"]["splits"]["test"]["metrics"]["ndcg@10"] == 0.6
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(str(tmp_path / "bad.json"))
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a bgekit results file"):
        read_json(str(tmp_path / "other.json"))
    with pytest.raises(FileNotFoundError, match="missing.json' does not exist"):
        read_json(str(tmp_path / "missing.json"))


def test_plot_curves_leaves_the_matplotlib_backend_alone(tmp_path):
    """A notebook's inline backend must survive a report plot (pyplot's switch to Agg used to hide later plots)."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a non-Agg backend, standing in for a notebook's
    try:
        plot_curves([("a", report("m", "float32", 0.6))], str(tmp_path / "c.png"))
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        matplotlib.use(before)
