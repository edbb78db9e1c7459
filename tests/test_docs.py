"""Every ```bash and ```python block of README.md and docs/*.md runs as written, so the docs cannot drift.

How a block is run
  - The blocks of one Markdown file run in order, in one fresh working folder per file (a later block may use
    what an earlier one wrote), each in a new process: bash blocks with ``bash -euo pipefail``, python blocks
    with this interpreter. Selecting one block with ``-k`` runs the blocks above it first.
  - Hub names are swapped for local models by the one table ``HUB`` below (the embedded all-MiniLM-L6-v2 or
    the tiny checkpoints in ../shared/golden/models); the ``paths`` fixture does the same for paths written
    relative to the repository (``../shared/...``, ``examples/``, ``benchmarks/``), and SciFact becomes a small
    subset so the run stays fast. A block that still names a ``BAAI/`` model fails: add the name to ``HUB``.
  - The environment is offline (``HF_HUB_OFFLINE=1``) with one torch thread.
  - Only ``bash``, ``sh`` and ``python`` blocks run. Output samples and file layouts use ``text`` / ``json``
    fences (or none) and are not run.

What runs by default: the blocks of the files in ``DEFAULT_RUN`` (README.md); the blocks of docs/*.md run with
``-m slow`` (``python -m pytest tests/test_docs.py -m "slow or not slow"`` runs all), so the default suite stays
fast.

Markers: an HTML comment on the line directly above a block's opening fence.
  ``<!-- docs: skip (needs a GPU) -->``, ``<!-- docs: skip (needs a hub download) -->``, ...
      Not run; the reason is the skip message. Put the offline alternative in the next block.
  ``<!-- docs: slow -->``
      Runs only with ``-m slow`` (whole-data or training runs); give a fast variant next to it where it matters.
  ``<!-- docs: needs-server ARGS -->``
      The test starts ``bgekit serve ARGS`` (hub names mapped; default ``--model all-MiniLM-L6-v2``) in the
      file's working folder on a free port, waits for ``/health``, rewrites ``127.0.0.1:8080`` /
      ``localhost:8080`` in the block to that port, runs the block, and stops the server.
  ``<!-- docs: starts-server -->``
      The block itself starts a server (``bgekit serve ...``, which runs until stopped): the test runs it in
      the background with port 8080 rewritten to a free one, requires ``/health`` to answer, then stops it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from golden import GOLDEN

ROOT = Path(__file__).resolve().parents[1]
SHARED = GOLDEN.parent
MODELS = GOLDEN / "models"
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))  # not docs/tutorials/: notebooks, tests/test_tutorials.py

# The one table of stand-ins: hub name -> local model of the same kind (longest names are replaced first).
HUB = {
    "BAAI/bge-m3": str(MODELS / "m3"),
    "BAAI/bge-base-en-v1.5": "all-MiniLM-L6-v2",
    "BAAI/bge-small-en-v1.5": "all-MiniLM-L6-v2",
    "BAAI/bge-large-en-v1.5": "all-MiniLM-L6-v2",
    "BAAI/bge-multilingual-gemma2": str(MODELS / "decoder-embedder"),
    "BAAI/bge-en-icl": str(MODELS / "decoder-embedder"),
    "BAAI/bge-reranker-base": str(MODELS / "xlmr-reranker"),
    "BAAI/bge-reranker-large": str(MODELS / "xlmr-reranker"),
    "BAAI/bge-reranker-v2-m3": str(MODELS / "xlmr-reranker"),
    "BAAI/bge-reranker-v2-gemma": str(MODELS / "llm-reranker"),
    "BAAI/bge-reranker-v2-minicpm-layerwise": str(MODELS / "layerwise-reranker"),
    "BAAI/bge-reranker-v2.5-gemma2-lightweight": str(MODELS / "lightweight-reranker"),
}
# The default run (``python -m pytest``) runs these files' blocks, the newcomer's first hour (about 100 s of CPU
# time); every other file's blocks, and blocks marked slow, run with ``-m slow`` (docs/ in full: about 150 s more).
DEFAULT_RUN = {"README.md"}
SCIFACT_QUERIES = 10      # the SciFact stand-in: these many test queries, their relevant docs and 40 others
SCIFACT_DOCS = 40
MARKER = re.compile(r"<!--\s*docs:\s*(skip|slow|needs-server|starts-server)\b\s*(.*?)\s*-->")
FENCE = re.compile(r"^```([\w+-]*)\s*$")
RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
TIMEOUT = 300


@dataclass
class Block:
    doc: Path
    line: int           # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None
    arg: str

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def extract(doc: Path) -> list[Block]:
    """The runnable blocks of one Markdown file, with the marker on the line above each."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{doc}:{i + 1}: a code block is never closed")
        marker = MARKER.fullmatch(lines[i - 1].strip()) if i else None
        if m.group(1) in RUNNABLE:
            blocks.append(Block(doc, i + 1, RUNNABLE[m.group(1)], "\n".join(lines[i + 1:end]) + "\n",
                                marker.group(1) if marker else None, marker.group(2) if marker else ""))
        i = end + 1
    return blocks


ALL = [b for doc in DOCS for b in extract(doc)]


def _param(block: Block):
    slow = block.marker == "slow" or block.doc.relative_to(ROOT).as_posix() not in DEFAULT_RUN
    return pytest.param(block, id=block.id, marks=[pytest.mark.slow] if slow else [])


def substitute(text: str, paths: dict[str, str]) -> str:
    """Hub names and data paths replaced where they start a word (``examples/`` but not ``finetune-examples/``)."""
    for table in (HUB, paths):
        for name in sorted(table, key=len, reverse=True):
            text = re.sub(r"(?<![\w./-])" + re.escape(name), lambda m, new=table[name]: new, text)
    return text


def _scifact_subset(folder: Path) -> str:
    """SciFact's first test queries, every document they judge and the first other documents."""
    src = SHARED / "data" / "scifact"
    (folder / "qrels").mkdir(parents=True)
    rows = (src / "qrels" / "test.tsv").read_text().splitlines()
    qids = list(dict.fromkeys(r.split("\t")[0] for r in rows[1:]))[:SCIFACT_QUERIES]
    kept = [r for r in rows[1:] if r.split("\t")[0] in qids]
    (folder / "qrels" / "test.tsv").write_text("\n".join([rows[0]] + kept) + "\n")
    judged = {r.split("\t")[1] for r in kept}
    with open(src / "corpus.jsonl", encoding="utf-8") as f, open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        others = 0
        for line in f:
            doc_id = json.loads(line)["_id"]
            if doc_id in judged or others < SCIFACT_DOCS:
                others += doc_id not in judged
                out.write(line)
    with open(src / "queries.jsonl", encoding="utf-8") as f, open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        out.writelines(line for line in f if json.loads(line)["_id"] in qids)
    return str(folder)


@pytest.fixture(scope="session")
def paths(tmp_path_factory) -> dict[str, str]:
    scifact = _scifact_subset(tmp_path_factory.mktemp("scifact-subset") / "scifact")  # reports key it "scifact"
    return {"../shared/data/scifact": scifact, "../shared/": str(SHARED) + "/", "examples/": str(ROOT / "examples") + "/",
            "benchmarks/": str(ROOT / "benchmarks") + "/"}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"{what} exited with {proc.returncode} before it answered /health:\n{out}\n{err}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{what} did not answer /health within 120 s")


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()


def _command(block: Block, code: str) -> list[str]:
    return ["bash", "-euo", "pipefail", "-c", code] if block.lang == "bash" else [sys.executable, "-c", code]


def _run(block: Block, code: str, cwd: Path) -> None:
    result = subprocess.run(_command(block, code), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode != 0:
        pytest.fail(f"{block.id} failed with exit code {result.returncode}\n--- code\n{code}--- stdout\n"
                    f"{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}")


def _on_port(code: str, port: int) -> str:
    return re.sub(r"(127\.0\.0\.1|localhost):8080", rf"\g<1>:{port}", code).replace("--port 8080", f"--port {port}")


def run_block(block: Block, cwd: Path, paths: dict[str, str]) -> None:
    code = substitute(block.code, paths)
    leftover = re.findall(r"BAAI/[\w.-]+", code)
    assert not leftover, f"{block.id}: add {leftover} to HUB in tests/test_docs.py (a local stand-in of the same kind)"
    if block.marker == "needs-server":
        port = _free_port()
        args = substitute(block.arg or "--model all-MiniLM-L6-v2", paths).split()
        server = subprocess.Popen(["bgekit", "serve", *args, "--port", str(port)], cwd=cwd, env=_env(), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_healthy(port, server, f"bgekit serve {' '.join(args)}")
            _run(block, _on_port(code, port), cwd)
        finally:
            _stop(server)
    elif block.marker == "starts-server":
        port = _free_port()
        proc = subprocess.Popen(_command(block, _on_port(code, port)), cwd=cwd, env=_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            _wait_healthy(port, proc, block.id)
        finally:
            _stop(proc)
    else:
        _run(block, code, cwd)


class Workdirs:
    """One working folder per Markdown file, and which of its blocks have run there."""

    def __init__(self, factory):
        self.factory, self.dirs, self.done, self.failed = factory, {}, set(), set()

    def folder(self, doc: Path) -> Path:
        if doc not in self.dirs:
            self.dirs[doc] = self.factory.mktemp(doc.stem.lower())
        return self.dirs[doc]


@pytest.fixture(scope="session")
def workdirs(tmp_path_factory) -> Workdirs:
    return Workdirs(tmp_path_factory)


@pytest.mark.parametrize("block", [_param(b) for b in ALL])
def test_doc_block_runs(block: Block, workdirs: Workdirs, paths, request):
    if block.marker == "skip":
        pytest.skip(f"{block.id}: {block.arg.strip('()') or 'marked skip'}")
    cwd = workdirs.folder(block.doc)
    slow_ok = "slow" in (request.config.getoption("-m") or "") and "not slow" not in request.config.getoption("-m")
    for earlier in [b for b in ALL if b.doc == block.doc and b.line < block.line]:
        if earlier.id in workdirs.failed:
            pytest.fail(f"{earlier.id}, above this block in the same file, failed; this block may depend on it")
        if earlier.id not in workdirs.done and earlier.marker not in ("skip", "starts-server") \
                and (earlier.marker != "slow" or slow_ok):
            _run_once(earlier, cwd, paths, workdirs)
    _run_once(block, cwd, paths, workdirs)


def _run_once(block: Block, cwd: Path, paths: dict[str, str], workdirs: Workdirs) -> None:
    workdirs.failed.add(block.id)
    run_block(block, cwd, paths)
    workdirs.failed.discard(block.id)
    workdirs.done.add(block.id)


def test_markers_are_well_formed_and_next_to_a_block():
    """A misspelt marker, or one not directly above a fence, would silently run (or skip) the wrong thing."""
    problems = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if "<!-- docs:" not in line:
                continue
            m = MARKER.fullmatch(line.strip())
            if not m:
                problems.append(f"{doc.name}:{n + 1}: unknown marker {line.strip()!r}")
            elif n + 1 >= len(lines) or not FENCE.match(lines[n + 1]) or FENCE.match(lines[n + 1]).group(1) not in RUNNABLE:
                problems.append(f"{doc.name}:{n + 1}: a marker must sit directly above a bash/python block")
            elif m.group(1) == "skip" and not re.fullmatch(r"\(.+\)", m.group(2)):
                problems.append(f"{doc.name}:{n + 1}: a skip needs a reason in parentheses")
    assert not problems, "\n".join(problems)


def test_blocks_were_found():
    assert len(ALL) >= 20 and {b.doc.name for b in ALL} >= {"README.md", "training.md"}
