"""Peak memory of `bgekit index build` over a large generated corpus: the corpus is streamed, vectors go to disk.

For each size in ``--sizes`` a corpus of short synthetic texts is written to a .jsonl file, and a child process
builds an index from it with ``build_index(path, model, stream_corpus(corpus))`` - what ``bgekit index build``
does. The child reports its peak RSS (VmHWM), its RSS before the build (imports and model loaded), the build
time, and the size of the dense vectors on disk (memory-mapped when searched). With ``--compare-in-memory``
the same build runs from a fully read corpus (``read_corpus``, the pre-streaming path) for comparison.

The default model is a stub BGE-M3: a bag of hashed words projected to 384 dimensions, plus the hashed words as
sparse lexical weights (no network, no weights, a few microseconds per text), so the figure is the index's
memory, not a transformer's; ``--model stub`` is its dense-only form. ``--model PATH`` uses a real
bgekit embedder instead (e.g. ../shared/golden/models/bert-embedder, a tiny BERT), at a far lower speed.

    python benchmarks/bench_index_memory.py [--sizes 100000,300000,1000000] [--model stub-m3|stub|PATH] [--compare-in-memory]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

WORDS = ("protein cell gene tumour immune vaccine virus brain heart lung blood liver kidney muscle bone skin "
         "drug dose trial patient risk cohort survival mortality infection receptor pathway signal enzyme "
         "membrane neuron synapse memory sleep diet obesity insulin glucose lipid stress ageing growth").split()


class HashEmbedder:
    """A stand-in bgekit embedder: each text is the normalised sum of fixed random vectors of its hashed words."""

    def __init__(self, dim: int = 384, buckets: int = 4096):
        from bgekit.registry import ModelSpec

        self.spec, self.dim, self.buckets = ModelSpec("encoder", "mean"), dim, buckets
        self.model_name_or_path, self.pooling_method, self.normalize_embeddings, self.truncate_dim = "hash-embedder", "mean", True, None
        self.passage_instruction_for_retrieval = self.query_instruction_for_retrieval = None
        self.passage_instruction_format = self.query_instruction_format = "{}{}"
        self.passage_max_length = 512
        self.table = np.random.default_rng(0).standard_normal((buckets, dim)).astype(np.float32)

    def _embed(self, texts) -> np.ndarray:
        import scipy.sparse as sp

        rows, cols = [], []
        for i, text in enumerate(texts):
            for word in text.split():
                rows.append(i)
                cols.append(zlib.crc32(word.encode()) % self.buckets)
        counts = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), self.buckets))
        out = np.asarray(counts @ self.table, dtype=np.float32)  # (N, D)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def encode(self, texts, **_):
        return self._embed([texts] if isinstance(texts, str) else texts)

    encode_corpus = encode_queries = encode


class HashM3(HashEmbedder):
    """The same stand-in as a BGE-M3 (dense + sparse): each word's hash bucket is a sparse token of weight 1/words."""

    colbert_vector_dim = 8

    def __init__(self):
        from bgekit.registry import ModelSpec

        super().__init__()
        self.spec, self.model_name_or_path = ModelSpec("m3", "cls"), "hash-m3"

    def encode_multi(self, texts, role="passage", outputs=("dense", "sparse"), **_):
        from bgekit.index.store import Vectors
        from bgekit.types import SparseVector

        sparse = []
        for text in texts:
            ids = np.unique([zlib.crc32(w.encode()) % 250_000 for w in text.split()])
            sparse.append(SparseVector(ids.astype(np.int64), np.full(len(ids), 1.0 / max(len(ids), 1), np.float32)))
        return Vectors(self._embed(texts), sparse, None)


STUBS = {"stub": HashEmbedder, "stub-m3": HashM3}


def write_corpus(path: str, n: int) -> None:
    rng = np.random.default_rng(n)
    picks = rng.integers(0, len(WORDS), (n, 8))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(WORDS[j] for j in picks[i])
            f.write(json.dumps({"id": f"d{i}", "text": f"study {i}: {text}", "year": 2000 + i % 25}) + "\n")


def _rss_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(corpus: str, out: str, model_name: str, in_memory: bool) -> None:
    """Build the index in this process and print one JSON line of measurements."""
    from bgekit.index.documents import read_corpus, stream_corpus
    from bgekit.index.store import build_index

    if model_name in STUBS:
        model = STUBS[model_name]()
    else:
        from bgekit.loading import load_embedder

        model = load_embedder(model_name, devices="cpu")
    before = _rss_kb("VmRSS")
    t = time.perf_counter()
    docs = read_corpus(corpus) if in_memory else stream_corpus(corpus)
    store = build_index(out, model, docs, show_progress=False)
    seconds = time.perf_counter() - t
    folder = store.segments[0].folder
    dense = os.path.getsize(os.path.join(folder, "dense.npy"))
    sparse = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith("sparse_"))
    print(json.dumps({"documents": store.count, "build_s": round(seconds, 1), "rss_before_mb": round(before / 1024),
                      "peak_rss_mb": round(_rss_kb("VmHWM") / 1024), "dense_on_disk_mb": round(dense / 2**20), "sparse_on_disk_mb": round(sparse / 2**20)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--model", default="stub-m3",
                    help="'stub-m3' (hashed words: 384-d dense + sparse), 'stub' (dense only) or a bgekit embedder path")
    ap.add_argument("--compare-in-memory", action="store_true", help="also build from a fully read corpus")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=4, metavar=("CORPUS", "OUT", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        corpus, out, model, mode = args.child
        return child(corpus, out, model, mode == "memory")
    root = tempfile.mkdtemp(prefix="bgekit-bench-index-memory-")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")}
    results = []
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            corpus = os.path.join(root, f"corpus-{n}.jsonl")
            write_corpus(corpus, n)
            for mode in ("stream", "memory") if args.compare_in_memory else ("stream",):
                out = os.path.join(root, f"index-{n}-{mode}")
                proc = subprocess.run([sys.executable, __file__, "--child", corpus, out, args.model, mode], env=env,
                                      capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"build of {n} documents ({mode}) failed:\n{proc.stderr[-3000:]}")
                row = {"mode": mode, "model": args.model, **json.loads(proc.stdout.strip().splitlines()[-1])}
                row["peak_minus_before_mb"] = row["peak_rss_mb"] - row["rss_before_mb"]
                results.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(out, ignore_errors=True)
            os.remove(corpus)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    streamed = [r for r in results if r["mode"] == "stream"]
    print(f"peak RSS of a streamed build: " + ", ".join(f"{r['documents']:,} docs {r['peak_rss_mb']} MB "
                                                       f"(dense vectors on disk {r['dense_on_disk_mb']} MB)" for r in streamed))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
