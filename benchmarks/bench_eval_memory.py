"""Peak memory of a retrieval evaluation over a large generated collection: the corpus is streamed from its file,
its vectors go to disk and are searched memory-mapped.

For each size in ``--sizes`` a collection in FlagEmbedding's custom layout (corpus.jsonl of short synthetic texts,
test_queries.jsonl, test_qrels.jsonl) is written, and a child process runs
``evaluate_retrieval(load_folder(folder), model, EvalConfig(retrieval=...))`` - what ``bgekit eval beir`` does for
one split. The child reports its peak RSS (VmHWM), its RSS before the evaluation (imports and model loaded), the
peak of its anonymous memory (RssAnon sampled every 10 ms: the process's own memory, without the page cache of
memory-mapped files), the time, and, as the ceiling an in-memory evaluation could not go below, the corpus
file's size plus the corpus vectors' size (dense float32 + sparse CSR, as written to disk).

The model is bench_index_memory's stub BGE-M3 (hashed words: 384-d dense vectors plus sparse weights; no weights,
microseconds per text), so the figure is the evaluation's memory, not a transformer's.

    python benchmarks/bench_eval_memory.py [--sizes 100000,1000000] [--retrieval dense+sparse] [--queries 1000]
        [--peer CHECKOUT]

``--peer`` runs the same evaluation with another bgekit checkout (e.g. ``git worktree add /tmp/before abd64d4``,
the last commit that read the corpus whole) for the ratio.
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

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_index_memory import STUBS, WORDS, _rss_kb, _sample_peak, write_corpus  # noqa: E402


def write_collection(folder: str, n: int, queries: int) -> None:
    """corpus.jsonl (n documents "d0".."d{n-1}"), test_queries.jsonl and test_qrels.jsonl (one judged document each)."""
    os.makedirs(folder, exist_ok=True)
    write_corpus(os.path.join(folder, "corpus.jsonl"), n)
    rng = np.random.default_rng(7)
    with open(os.path.join(folder, "test_queries.jsonl"), "w", encoding="utf-8") as fq, \
            open(os.path.join(folder, "test_qrels.jsonl"), "w", encoding="utf-8") as fr:
        for q in range(queries):
            words = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 4))
            fq.write(json.dumps({"id": f"q{q}", "text": f"study {words}"}) + "\n")
            fr.write(json.dumps({"qid": f"q{q}", "docid": f"d{int(rng.integers(0, n))}", "relevance": 1}) + "\n")


def child(folder: str, model_name: str, retrieval: str) -> None:
    """Evaluate in this process and print one JSON line of measurements."""
    from bgekit.eval.data import load_folder
    from bgekit.eval.runner import EvalConfig, evaluate_retrieval

    import faiss  # noqa: F401 - the search's libraries count in "before", as the model does
    import scipy.sparse  # noqa: F401

    model = STUBS[model_name]()
    anon = _sample_peak("RssAnon")
    sizes = {}
    try:
        import bgekit.eval.stream as stream
    except ImportError:  # a bgekit from before streaming (run as a peer: see --peer)
        stream = None
    if stream is not None:
        opened = stream.open_corpus_files

        def measure(files):  # the corpus vectors' size on disk, as the search opens them
            sizes.update({name: os.path.getsize(path) for name, path in files.items()})
            return opened(files)

        stream.open_corpus_files = measure  # the runner imports it at call time
    before = _rss_kb("VmRSS")
    t = time.perf_counter()
    data = load_folder(folder, split="test")
    loaded = time.perf_counter() - t
    # the qrels are random: the scores mean nothing, the memory does
    result = evaluate_retrieval(data, model, config=EvalConfig(retrieval=retrieval, search_top_k=100,
                                                               show_progress=False))
    seconds = time.perf_counter() - t
    vectors = sum(v for k, v in sizes.items() if not k.startswith("sparse_inv")) or len(data.doc_ids) * model.dim * 4
    corpus_bytes = os.path.getsize(os.path.join(folder, "corpus.jsonl"))
    print(json.dumps({"documents": len(data.doc_ids), "queries": result.num_queries, "retrieval": retrieval,
                      "load_s": round(loaded, 1), "eval_s": round(seconds, 1),
                      "rss_before_mb": round(before / 1024), "peak_rss_mb": round(_rss_kb("VmHWM") / 1024),
                      "peak_anon_mb": round(anon() / 1024), "corpus_file_mb": round(corpus_bytes / 2**20),
                      "vectors_on_disk_mb": round(vectors / 2**20)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--retrieval", default="dense+sparse", choices=("dense", "sparse", "dense+sparse"))
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--peer", default=None, metavar="CHECKOUT",
                    help="also evaluate with the bgekit in this checkout (e.g. a git worktree of a commit from "
                         "before streaming) on the same collection, for the ratio")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=3, metavar=("FOLDER", "MODEL", "RETRIEVAL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    root = tempfile.mkdtemp(prefix="bgekit-bench-eval-memory-")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")}
    model = "stub-m3" if "sparse" in args.retrieval else "stub"
    results = []
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            folder = os.path.join(root, f"collection-{n}")
            write_collection(folder, n, args.queries)
            for label, path in [("bgekit", env["PYTHONPATH"])] + ([("peer", args.peer)] if args.peer else []):
                proc = subprocess.run([sys.executable, __file__, "--child", folder, model, args.retrieval],
                                      env={**env, "PYTHONPATH": path}, capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(f"evaluation of {folder} ({label}) failed:\n{proc.stderr[-3000:]}")
                row = {"code": label, **json.loads(proc.stdout.strip().splitlines()[-1])}
                row["peak_minus_before_mb"] = row["peak_rss_mb"] - row["rss_before_mb"]
                row["in_memory_floor_mb"] = row["corpus_file_mb"] + row["vectors_on_disk_mb"]
                print(json.dumps(row), flush=True)
                results.append(row)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("\n| code | documents | retrieval | peak RSS | peak anonymous | before | corpus file + vectors | time |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['code']} | {r['documents']:,} | {r['retrieval']} | {r['peak_rss_mb']} MB | {r['peak_anon_mb']} MB | "
              f"{r['rss_before_mb']} MB | {r['in_memory_floor_mb']} MB | {r['eval_s']} s |")
    for ours, peer in zip(results[::2], results[1::2]) if args.peer else ():
        print(f"{ours['documents']:,} documents: peak anonymous memory {ours['peak_anon_mb']} MB vs the peer's "
              f"{peer['peak_anon_mb']} MB (ratio {ours['peak_anon_mb'] / peer['peak_anon_mb']:.2f}); peak RSS "
              f"{ours['peak_rss_mb']} vs {peer['peak_rss_mb']} MB (ratio {ours['peak_rss_mb'] / peer['peak_rss_mb']:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
