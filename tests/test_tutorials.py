"""docs/tutorials/*.md run end to end as notebooks, so the tutorials cannot go stale.

Each tutorial is a jupytext Markdown notebook (``python`` fences are code cells). The test converts it with
jupytext, executes it with nbclient in a fresh kernel and a fresh working folder, and fails on the first cell
that raises: the tutorials' ``assert`` cells check the numbers their prose claims. The kernel sees
``BGEKIT_SHARED`` (the folder holding ``data/`` and ``golden/``, beside this checkout as for every test),
``HF_HUB_OFFLINE=1`` and, for the fast ones, one torch thread, as tests/test_docs.py gives the docs.

Fast tutorials run by default; the long ones (the full SciFact evaluation, fine-tuning, merging a real
fine-tune) carry the ``slow`` marker: ``python -m pytest tests/test_tutorials.py -m slow``.
``BGEKIT_TUTORIAL_OUT=DIR`` also saves each executed notebook (with its outputs and plots) as DIR/NAME.ipynb.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from golden import GOLDEN

jupytext = pytest.importorskip("jupytext", reason="could not import jupytext (the test extra installs it)")
nbclient = pytest.importorskip("nbclient", reason="could not import nbclient (the test extra installs it)")
pytest.importorskip("ipykernel", reason="could not import ipykernel (the test extra installs it)")

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs" / "tutorials"
SHARED = GOLDEN.parent
# Every tutorial, and whether it is slow (minutes of CPU on the full data or a training run).
TUTORIALS = {
    "01-embeddings-and-similarity.md": False,
    "02-instructions-and-pooling.md": False,
    "03-bge-m3-hybrid.md": False,
    "04-index-and-search.md": False,
    "05-beir-evaluation.md": True,
    "06-reranking.md": False,
    "07-fine-tuning.md": True,
    "08-model-merging.md": True,
    "09-serving.md": False,
}
# seconds for one cell (a slow tutorial's training cell takes minutes); BGEKIT_TUTORIAL_TIMEOUT on a busy machine
CELL_TIMEOUT = int(os.environ.get("BGEKIT_TUTORIAL_TIMEOUT", "900"))


def _env(slow: bool) -> dict[str, str]:
    env = {"BGEKIT_SHARED": str(SHARED), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    if not slow:  # the default run shares CI's 2 cores; the slow tutorials (run by hand) use the whole machine
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if slow else [], id=n.removesuffix(".md"))
                                  for n, slow in TUTORIALS.items()])
def test_tutorial_runs(name, tmp_path, monkeypatch):
    if not (SHARED / "data").is_dir():
        pytest.skip(f"{SHARED / 'data'} not found (../shared beside this checkout)")
    for key, value in _env(TUTORIALS[name]).items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = jupytext.read(FOLDER / name)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"docs/tutorials/{name}: a cell failed\n{_strip_ansi(str(e))[-6000:]}", pytrace=False)
    finally:
        out = os.environ.get("BGEKIT_TUTORIAL_OUT")
        if out:
            import nbformat

            Path(out).mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, Path(out) / name.replace(".md", ".ipynb"))


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_every_tutorial_is_listed_and_indexed():
    """A new tutorial must be run by this test and linked from the index; a listed one must exist."""
    on_disk = {p.name for p in FOLDER.glob("*.md")} - {"README.md"}
    assert on_disk == set(TUTORIALS), f"on disk but not in TUTORIALS: {sorted(on_disk - set(TUTORIALS))}; " \
                                      f"in TUTORIALS but missing: {sorted(set(TUTORIALS) - on_disk)}"
    index = (FOLDER / "README.md").read_text(encoding="utf-8")
    unlinked = [n for n in TUTORIALS if f"({n})" not in index]
    assert not unlinked, f"docs/tutorials/README.md does not link {unlinked}"


def test_tutorials_parse_into_code_cells():
    """Each tutorial has code cells (a misspelt fence would turn the whole tutorial into prose)."""
    for name in TUTORIALS:
        nb = jupytext.read(FOLDER / name)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert len(code) >= 4, f"{name}: {len(code)} code cells; are its fences ```python?"
        assert any("assert " in c.source for c in code), f"{name}: no assert cell checks what the prose claims"
