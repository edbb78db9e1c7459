"""Peak memory of `bgekit index build` over a large generated corpus: the corpus is streamed, vectors go to disk.

For each size in ``--sizes`` a corpus of short synthetic texts is written to a .jsonl file, and a child process
builds an index from it with ``build_index(path, model, stream_corpus(corpus))`` - what ``bgekit index build``
does. The child reports its peak RSS (VmHWM), its RSS before the build (imports and model loaded), the build
time, and the size of the dense vectors on disk (memory-mapped when searched). RSS counts the pages of
memory-mapped files the process has read (page cache the kernel can drop), so the child also samples its anonymous
memory (RssAnon, every 10 ms: a lower bound of its peak), the part that is the process's own. With ``--compare-in-memory``
the same build runs from a fully read corpus (``read_corpus``, the pre-streaming path) for comparison.

With ``--add``, another corpus of the same size (new ids) is then added to the built index in a fresh child, as
``bgekit index add`` does (``store.add(stream_corpus(corpus), model)``): its peak RSS is the add's alone, to set
against the build's. The merge policy rewrites the base segment into the new one (it is smaller than eight times
the added documents), so the add writes twice the rows it adds. With ``--compare-in-memory`` too, the same add
also runs from a fully read corpus (on a copy of the built index).

The default model is a stub BGE-M3: a bag of hashed words projected to 384 dimensions, plus the hashed words as
sparse lexical weights (no network, no weights, a few microseconds per text), so the figure is the index's
memory, not a transformer's; ``--model stub`` is its dense-only form. ``--model PATH`` uses a real
bgekit embedder instead (e.g. ../shared/golden/models/bert-embedder, a tiny BERT), at a far lower speed.

    python benchmarks/bench_index_memory.py [--sizes 100000,300000,1000000] [--model stub-m3|stub|PATH]
        [--compare-in-memory] [--add]
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


def write_corpus(path: str, n: int, prefix: str = "d") -> None:
    rng = np.random.default_rng(n if prefix == "d" else [n, ord(prefix)])
    picks = rng.integers(0, len(WORDS), (n, 8))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(WORDS[j] for j in picks[i])
            f.write(json.dumps({"id": f"{prefix}{i}", "text": f"study {i}: {text}", "year": 2000 + i % 25}) + "\n")


def _rss_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _sample_peak(field: str):
    """Sample a /proc/self/status field every 10 ms in a thread; returns a function giving the peak so far."""
    import threading

    peak = [_rss_kb(field)]

    def run() -> None:
        while True:
            peak[0] = max(peak[0], _rss_kb(field))
            time.sleep(0.01)

    threading.Thread(target=run, daemon=True).start()
    return lambda: max(peak[0], _rss_kb(field))


def child(corpus: str, out: str, model_name: str, mode: str, factory: str = "Flat") -> None:
    """Build the index (mode "stream" / "memory"), or add to the one in ``out`` ("add" / "add-memory"), or open it
    and search it ("search"), in this process and print one JSON line of measurements."""
    from bgekit.index.documents import read_corpus, stream_corpus
    from bgekit.index.store import build_index, open_index

    if model_name in STUBS:
        model = STUBS[model_name]()
    else:
        from bgekit.loading import load_embedder

        model = load_embedder(model_name, devices="cpu")
    if mode == "search":
        return search_child(out, model)
    anon = _sample_peak("RssAnon")
    adding = mode.startswith("add")
    store = open_index(out) if adding else None
    before = _rss_kb("VmRSS")
    t = time.perf_counter()
    docs = read_corpus(corpus) if mode.endswith("memory") else stream_corpus(corpus)
    if adding:
        store.add(docs, model, show_progress=False)
    else:
        store = build_index(out, model, docs, factory=factory, show_progress=False)
    seconds = time.perf_counter() - t
    dense = sum(os.path.getsize(os.path.join(seg.folder, "dense.npy")) for seg in store.segments)
    sparse = sum(os.path.getsize(os.path.join(seg.folder, f)) for seg in store.segments for f in os.listdir(seg.folder)
                 if f.startswith("sparse_"))
    print(json.dumps({"documents": store.count, "add_s" if adding else "build_s": round(seconds, 1),
                      "rss_before_mb": round(before / 1024), "peak_rss_mb": round(_rss_kb("VmHWM") / 1024),
                      "peak_anon_mb": round(anon() / 1024),
                      "dense_on_disk_mb": round(dense / 2**20), "sparse_on_disk_mb": round(sparse / 2**20),
                      **({"added": len(docs), "segments": len(store.segments)} if adding else {})}))


def search_child(out: str, model) -> None:
    """Open the index and run 200 dense searches: the anonymous memory this takes, against the FAISS file's size
    (an approximate index is memory-mapped, so its graph or lists should not show up as the process's own)."""
    import faiss  # noqa: F401 - imported before measuring, as the model is

    from bgekit.index.search import Searcher
    from bgekit.index.store import open_index

    before = _rss_kb("RssAnon")
    store = open_index(out)
    searcher = Searcher(store, model)
    for i in range(200):
        searcher.search(f"study {WORDS[i % len(WORDS)]} {WORDS[(7 * i) % len(WORDS)]}", top_k=10, mode="dense")
    faiss_mb = sum(os.path.getsize(os.path.join(seg.folder, "dense.faiss")) for seg in store.segments
                   if os.path.isfile(os.path.join(seg.folder, "dense.faiss"))) / 2**20
    print(json.dumps({"documents": store.count, "factory": store.manifest["dense"]["factory"],
                      "anon_after_open_and_search_mb": round((_rss_kb("RssAnon") - before) / 1024),
                      "faiss_file_mb": round(faiss_mb), "rss_before_mb": round(before / 1024),
                      "peak_rss_mb": round(_rss_kb("VmHWM") / 1024)}))


def _run(corpus: str, out: str, model: str, mode: str, env: dict, factory: str = "Flat") -> dict:
    """One child process (a build, an add or a search); its measurements, printed as a JSON line."""
    proc = subprocess.run([sys.executable, __file__, "--child", corpus, out, model, mode, factory], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{mode} of {corpus} failed:\n{proc.stderr[-3000:]}")
    row = {"mode": mode, "model": model, **json.loads(proc.stdout.strip().splitlines()[-1])}
    row["peak_minus_before_mb"] = row["peak_rss_mb"] - row["rss_before_mb"]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--model", default="stub-m3",
                    help="'stub-m3' (hashed words: 384-d dense + sparse), 'stub' (dense only) or a bgekit embedder path")
    ap.add_argument("--compare-in-memory", action="store_true", help="also build (and add) from a fully read corpus")
    ap.add_argument("--add", action="store_true", help="then add as many new documents to the built index")
    ap.add_argument("--json", default=None)
    ap.add_argument("--factory", default="Flat", help="FAISS index of the build (e.g. HNSW32, IVF1024,Flat)")
    ap.add_argument("--search", action="store_true",
                    help="then open the built index and search it: the anonymous memory that takes vs the FAISS file")
    ap.add_argument("--child", nargs=5, metavar=("CORPUS", "OUT", "MODEL", "MODE", "FACTORY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    root = tempfile.mkdtemp(prefix="bgekit-bench-index-memory-")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")}
    results = []
    run = lambda corpus, out, mode: results.append(_run(corpus, out, args.model, mode, env, args.factory))  # noqa: E731
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            corpus = os.path.join(root, f"corpus-{n}.jsonl")
            write_corpus(corpus, n)
            for mode in ("stream", "memory") if args.compare_in_memory else ("stream",):
                out = os.path.join(root, f"index-{n}-{mode}")
                run(corpus, out, mode)
                if args.search and mode == "stream":
                    run(corpus, out, "search")
                if args.add and mode == "stream":
                    more = os.path.join(root, f"more-{n}.jsonl")
                    write_corpus(more, n, prefix="a")
                    if args.compare_in_memory:
                        shutil.copytree(out, out + "-copy")
                        run(more, out + "-copy", "add-memory")
                        shutil.rmtree(out + "-copy", ignore_errors=True)
                    run(more, out, "add")
                    os.remove(more)
                shutil.rmtree(out, ignore_errors=True)
            os.remove(corpus)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in (r for r in results if r["mode"] == "search"):
        print(f"open + 200 searches of a {r['factory']} index of {r['documents']:,} docs: "
              f"{r['anon_after_open_and_search_mb']} MB of anonymous memory, FAISS file {r['faiss_file_mb']} MB")
    streamed = [r for r in results if r["mode"] == "stream"]
    print(f"peak RSS of a streamed build: " + ", ".join(f"{r['documents']:,} docs {r['peak_rss_mb']} MB "
                                                       f"(dense vectors on disk {r['dense_on_disk_mb']} MB)" for r in streamed))
    added = [r for r in results if r["mode"] == "add"]
    if added:
        print("peak RSS of a streamed add, against the streamed build of the base: " + ", ".join(
            f"{r['added']:,} docs added to {b['documents']:,}: {r['peak_rss_mb']} MB, anonymous {r['peak_anon_mb']} MB "
            f"(build {b['peak_rss_mb']} MB, anonymous {b['peak_anon_mb']} MB; ratio {r['peak_rss_mb'] / b['peak_rss_mb']:.2f}"
            f", anonymous {r['peak_anon_mb'] / b['peak_anon_mb']:.2f})" for r, b in zip(added, streamed)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
