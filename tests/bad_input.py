"""Fixture files for the tests/test_bad_input_*.py family: one folder of good and broken inputs, made once.

Every case table refers to these files by name in ``{placeholders}``; add a file here when a new case needs one.
"""
import gzip
import json
import os
import shutil

from golden import GOLDEN

BERT = str(GOLDEN / "models" / "bert-embedder")
M3 = str(GOLDEN / "models" / "m3")
XLMR = str(GOLDEN / "models" / "xlmr-reranker")
CORPUS = [{"id": f"d{i}", "text": t} for i, t in enumerate(
    ["pandas eat bamboo", "cats purr", "dogs bark", "the giant panda lives in Sichuan", "rain in Spain"])]


def _jsonl(path, rows, prefix=b""):
    with open(path, "wb") as f:
        f.write(prefix + "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
    return str(path)


def _beir(root):
    os.makedirs(os.path.join(root, "qrels"), exist_ok=True)
    _jsonl(os.path.join(root, "corpus.jsonl"), [{"_id": r["id"], "text": r["text"]} for r in CORPUS])
    _jsonl(os.path.join(root, "queries.jsonl"), [{"_id": "q1", "text": "panda food"}, {"_id": "q2", "text": "barking"}])
    with open(os.path.join(root, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td2\t1\n")
    return root


def make_files(d) -> dict[str, str]:
    """Write every fixture under folder ``d``; returns placeholder name -> path (plus the model paths)."""
    from bgekit import Embedder
    from bgekit.index.store import build_index

    d = str(d)
    f = {"d": d, "bert": BERT, "m3": M3, "xlmr": XLMR}
    f["txt"] = str(os.path.join(d, "texts.txt"))
    with open(f["txt"], "w", encoding="utf-8") as fh:
        fh.write("pandas eat bamboo\ncats purr\n")
    f["long_txt"] = os.path.join(d, "long.txt")
    with open(f["long_txt"], "w", encoding="utf-8") as fh:
        fh.write(" ".join(["word"] * 700) + "\n")
    f["jsonl"] = _jsonl(os.path.join(d, "texts.jsonl"), [{"text": "pandas"}, {"text": "cats"}])
    f["bom_jsonl"] = _jsonl(os.path.join(d, "bom.jsonl"), [{"text": "pandas"}, {"text": "cats"}], prefix=b"\xef\xbb\xbf")
    f["corpus"] = _jsonl(os.path.join(d, "corpus.jsonl"), CORPUS)
    f["pairs"] = _jsonl(os.path.join(d, "pairs.jsonl"), [{"query": "panda", "passages": ["bamboo", "cats"]}])
    f["bad_utf8"] = os.path.join(d, "latin1.txt")
    with open(f["bad_utf8"], "wb") as fh:
        fh.write(b"fine\ncaf\xe9 au lait\n")
    f["folder"] = os.path.join(d, "a-folder")
    os.makedirs(f["folder"])
    f["folder_npy"] = os.path.join(d, "taken.npy")
    os.makedirs(f["folder_npy"])
    gz = os.path.join(d, "corpus.jsonl.gz")
    with gzip.open(gz, "wb") as fh:
        fh.write(("".join(json.dumps(r) + "\n" for r in CORPUS * 40)).encode())
    data = open(gz, "rb").read()
    f["truncated_gz"] = os.path.join(d, "truncated.jsonl.gz")
    with open(f["truncated_gz"], "wb") as fh:
        fh.write(data[: len(data) // 2])
    f["beir"] = _beir(os.path.join(d, "beir"))
    f["beir_truncated_gz"] = _beir(os.path.join(d, "beir-gz"))
    os.remove(os.path.join(f["beir_truncated_gz"], "qrels", "test.tsv"))
    with open(os.path.join(f["beir_truncated_gz"], "qrels", "test.tsv.gz"), "wb") as fh:
        fh.write(gzip.compress(b"query-id\tcorpus-id\tscore\n" + b"q1\td0\t1\n" * 500)[:60])
    # broken models: malformed config.json; truncated and garbage weights
    for name, breaker in (("model_bad_config", _bad_config), ("model_truncated_weights", _truncated_weights),
                          ("model_garbage_weights", _garbage_weights)):
        f[name] = os.path.join(d, name)
        shutil.copytree(BERT, f[name])
        breaker(f[name])
    # an index, and copies with a damaged document table / manifest
    f["index"] = os.path.join(d, "index")
    build_index(f["index"], Embedder(BERT, devices="cpu"), CORPUS, show_progress=False)
    f["index_bad_sqlite"] = _damaged_copy(f["index"], os.path.join(d, "index-bad-sqlite"), "docs.sqlite", _scribble)
    f["index_bad_pages"] = _damaged_copy(f["index"], os.path.join(d, "index-bad-pages"), "docs.sqlite", _scribble_pages)
    f["index_bad_manifest"] = _damaged_copy(f["index"], os.path.join(d, "index-bad-manifest"), "manifest.json",
                                            lambda p: open(p, "w").write("{not json"))
    from bgekit.cli import main

    f["results"] = os.path.join(d, "results.json")
    assert main(["eval", "beir", "--dataset-dir", f["beir"], "--retrieval", "bm25", "--output", f["results"],
                 "--no-progress"]) == 0
    return f


def _bad_config(folder):
    with open(os.path.join(folder, "config.json"), "w") as fh:
        fh.write('{"model_type": "bert",\n "hidden_size": 32,,\n}')


def _truncated_weights(folder):
    path = os.path.join(folder, "model.safetensors")
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])


def _garbage_weights(folder):
    with open(os.path.join(folder, "model.safetensors"), "wb") as fh:
        fh.write(b"this is not a weights file")


def _scribble(path):
    """Overwrite the middle of the file with garbage, keeping its size (the manifest's size check passes)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(b"\x00garbage" * (size // 16))


def _scribble_pages(path):
    """Keep SQLite's header page, overwrite the data pages (same size)."""
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xffgarbage" * ((size - 4096) // 8))


def _damaged_copy(src, dst, name, damage):
    shutil.copytree(src, dst)
    current = open(os.path.join(dst, "CURRENT")).read().strip()
    folder = os.path.join(dst, current)
    if not os.path.exists(os.path.join(folder, name)):  # index format 2: documents and vectors live in a segment
        folder = os.path.join(dst, json.load(open(os.path.join(folder, "manifest.json")))["segments"][0]["name"])
    damage(os.path.join(folder, name))
    return dst
