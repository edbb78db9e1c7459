"""Corpus encoding on Ray (bgekit.distributed) against a single process on the same CPUs, in one run.

A corpus of short synthetic passages is written to a .jsonl file. The peer is one process encoding it with
``encode_corpus`` on as many torch threads as the Ray run has actors; the Ray run is ``encode_to_shards`` on a
new local runtime with ``--actors`` CPU actors of one CPU each (plus one CPU for the read tasks). Both times
include reading the corpus; the Ray time also includes starting the actors and loading one model per actor,
but not starting the runtime (printed apart). The script also prints the largest difference between the two
outputs and checks that the ids come back in order.

    python benchmarks/bench_ray_encode.py [--docs 4000] [--actors 1] [--model all-MiniLM-L6-v2] [--json out.json]

On a GPU machine, ``--gpu`` gives each actor one GPU and the peer one GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time

import numpy as np

WORDS = ("protein cell gene tumour immune vaccine virus brain heart lung blood liver kidney muscle bone skin drug "
         "dose trial patient risk cohort survival mortality infection receptor pathway signal enzyme membrane "
         "neuron synapse memory sleep diet obesity insulin glucose lipid stress ageing growth").split()


def write_corpus(path: str, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 48))) for _ in range(n)]
    with open(path, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
    return texts


def single_process(model: str, texts: list[str], threads: int, device: str, batch_size: int) -> tuple[float, np.ndarray]:
    import torch

    from bgekit.loading import load_embedder

    torch.set_num_threads(threads)
    emb = load_embedder(model, devices=device, batch_size=batch_size)
    start = time.perf_counter()
    out = np.asarray(emb.encode_corpus(texts, show_progress=False), dtype=np.float32)
    return time.perf_counter() - start, out


def on_ray(model: str, corpus: str, out: str, actors: int, gpu: bool, batch_size: int, ray_batch: int) -> dict:
    import ray

    from bgekit.distributed import encode_to_shards

    start = time.perf_counter()
    ray.init(address="local", num_cpus=actors + 1, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    try:
        start = time.perf_counter()
        shards = encode_to_shards(corpus, out, model, model_kwargs={"batch_size": batch_size}, concurrency=actors,
                                  use_gpu=gpu, batch_size=ray_batch, show_progress=False)
        return {"runtime_start_s": started, "encode_s": time.perf_counter() - start, "shards": shards}
    finally:
        ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=4000)
    p.add_argument("--actors", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--model", default="all-MiniLM-L6-v2")
    p.add_argument("--batch-size", type=int, default=64, help="the model's forward batch")
    p.add_argument("--ray-batch-size", type=int, default=256, help="rows per actor call")
    p.add_argument("--gpu", action="store_true", help="one GPU per actor; the peer uses cuda:0")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-ray-")
    try:
        corpus = os.path.join(tmp, "corpus.jsonl")
        texts = write_corpus(corpus, args.docs)
        peer_s, peer = single_process(args.model, texts, args.actors, "cuda:0" if args.gpu else "cpu", args.batch_size)
        ray_run = on_ray(args.model, corpus, os.path.join(tmp, "emb"), args.actors, args.gpu, args.batch_size,
                         args.ray_batch_size)
        shards = ray_run.pop("shards")
        in_order = shards.ids() == [f"d{i}" for i in range(args.docs)]
        result = {"docs": args.docs, "actors": args.actors, "model": args.model, "gpu": args.gpu,
                  "single_process_s": round(peer_s, 2), "single_process_docs_per_s": round(args.docs / peer_s, 1),
                  "ray_runtime_start_s": round(ray_run["runtime_start_s"], 2),
                  "ray_encode_s": round(ray_run["encode_s"], 2),
                  "ray_docs_per_s": round(args.docs / ray_run["encode_s"], 1),
                  "ray_over_single_process": round(peer_s / ray_run["encode_s"], 3),
                  "max_abs_diff": float(np.abs(shards.dense() - peer).max()), "ids_in_order": in_order}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:>{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
