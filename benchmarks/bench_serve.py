"""Serving load test on loopback: 64 concurrent clients against `bgekit serve`, batched vs one-at-a-time.

Starts `bgekit serve` in a subprocess bound to 127.0.0.1 (a free port), then drives ``POST /v1/embeddings``
(one SciFact query per request) from ``--clients`` concurrent httpx clients for ``--seconds`` (and at most
``--max-requests``). Three runs:

- ``batched``: the default coalescing queue (token budget ``--max-batch-tokens``, ``--max-wait-ms``);
- ``unbatched``: the same server with a 1-token budget, so every request is its own model call;
- ``sequential``: one client, one request at a time (the latency floor).

Before the server runs, the same model is timed in this process on the same texts, in batches of
``--clients`` and one text per call: that ratio is the most any batching server can gain over one-at-a-time
requests on this machine, HTTP costs aside.

Reports requests/s, p50/p99 latency and errors per run, and checks every response against the library's
direct output for the same text (``model.encode(texts, max_length=...)`` in this process): the largest absolute
difference, and that each response is nearest to its own text's vector (no mix-ups). No request may be lost:
sent == answered.

    python benchmarks/bench_serve.py [--model all-MiniLM-L6-v2] [--clients 64] [--seconds 15] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact")
SERVER_ARGS: list[str] = []  # extra `bgekit serve` arguments (--server-arg)


def load_texts(n: int) -> list[str]:
    path = os.path.join(SCIFACT, "queries.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            texts = list(dict.fromkeys(json.loads(line)["text"] for line in f))
    else:  # pragma: no cover - without the data folder
        texts = [f"synthetic query number {i} about proteins and cells" for i in range(n)]
    return texts[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, extra: list[str], dtype: str | None, threads: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bgekit.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
           "--max-queue", "100000", "--max-client-batch-size", "64"] + extra + (["--dtype", dtype] if dtype else [])
    cmd += ["--threads", str(threads)] if threads else []
    cmd += SERVER_ARGS
    env = {**os.environ, "PYTHONPATH": os.path.join(HERE, "..") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start in 180 s")


class Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: httpx costs more CPU per request than the server
    spends on it, and on a small machine the load generator would otherwise measure itself."""

    def __init__(self, port: int):
        self.port, self.reader, self.writer = port, None, None

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        body = json.dumps(payload).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def drive(port: int, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    latencies, statuses, answers = [], [], []
    sent = [0]

    async def client(worker: int, deadline: float) -> None:
        conn, i = Connection(port), worker
        try:
            while time.perf_counter() < deadline and sent[0] < max_requests:
                sent[0] += 1
                idx = i % len(texts)
                i += clients
                start = time.perf_counter()
                try:
                    status, body = await conn.post("/v1/embeddings", {"input": texts[idx]})
                    statuses.append(status)
                    if status == 200:
                        answers.append((idx, body))
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    statuses.append(type(e).__name__)
                    conn.close()
                    conn = Connection(port)
                latencies.append(time.perf_counter() - start)
        finally:
            conn.close()

    warm = Connection(port)
    await warm.post("/v1/embeddings", {"input": "warm up"})
    warm.close()
    start = time.perf_counter()
    await asyncio.gather(*(client(w, start + seconds) for w in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    ok = sum(1 for s in statuses if s == 200)
    answers = [(i, json.loads(b)["data"][0]["embedding"]) for i, b in answers]
    return {"clients": clients, "sent": sent[0], "answered": len(statuses), "ok": ok, "errors": len(statuses) - ok,
            "seconds": round(elapsed, 2), "requests_per_s": round(ok / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "_answers": answers}


def check(answers: list, direct: np.ndarray) -> dict:
    idx = np.array([i for i, _ in answers])
    got = np.array([v for _, v in answers], dtype=np.float32)
    diff = float(np.abs(got - direct[idx]).max()) if len(got) else 0.0
    nearest = (got @ direct.T).argmax(axis=1) if len(got) else idx
    same = direct[nearest] == direct[idx]  # identical texts share a vector
    return {"max_abs_diff": diff, "mixups": int((~same.all(axis=1)).sum())}


def run_one(name: str, args, texts, direct, extra: list[str], clients: int) -> dict:
    port = free_port()
    proc = start_server(args.model, port, extra, args.dtype, args.threads)
    try:
        result = asyncio.run(drive(port, texts, clients, args.seconds, args.max_requests))
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    result.update(check(result.pop("_answers"), direct))
    result["run"] = name
    print(f"{name:>10}  clients {clients:>3}  {result['requests_per_s']:>8.1f} req/s  p50 {result['p50_ms']:>8.2f} ms  "
          f"p99 {result['p99_ms']:>8.2f} ms  errors {result['errors']}  sent/answered {result['sent']}/{result['answered']}  "
          f"max|diff| {result['max_abs_diff']:.2e}  mix-ups {result['mixups']}", flush=True)
    return result


def in_process_ceiling(model, texts: list[str], batch: int, singles: int = 200) -> dict:
    """Texts/s of the model itself, batched (``batch`` per call) and one text per call, best of 2 each."""
    model.encode(texts[:batch], batch_size=batch, show_progress=False)  # warm-up
    best = {"batched": float("inf"), "single": float("inf")}
    for _ in range(2):
        start = time.perf_counter()
        model.encode(texts, batch_size=batch, show_progress=False)
        best["batched"] = min(best["batched"], (time.perf_counter() - start) / len(texts))
        start = time.perf_counter()
        for text in texts[:singles]:
            model.encode([text], show_progress=False)
        best["single"] = min(best["single"], (time.perf_counter() - start) / min(singles, len(texts)))
    out = {"batched_texts_per_s": round(1 / best["batched"], 1), "single_texts_per_s": round(1 / best["single"], 1),
           "ratio": round(best["single"] / best["batched"], 2)}
    print(f"in-process ceiling: batches of {batch} {out['batched_texts_per_s']} texts/s, one per call "
          f"{out['single_texts_per_s']} texts/s: {out['ratio']:.2f}x", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--max-requests", type=int, default=50000)
    ap.add_argument("--texts", type=int, default=1000, help="distinct texts (SciFact queries)")
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--runs", default="batched,unbatched,sequential")
    ap.add_argument("--threads", type=int, default=None,
                    help="server torch threads; 1 is steadier when other processes share the CPU")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--server-arg", action="append", default=[], help="extra `bgekit serve` argument, repeatable "
                    "(e.g. --server-arg=--batch-size --server-arg=32)")
    args = ap.parse_args()
    SERVER_ARGS.extend(args.server_arg)

    from bgekit.loading import load_embedder

    texts = load_texts(args.texts)
    model = load_embedder(args.model, **({"dtype": args.dtype} if args.dtype else {}))
    direct = np.asarray(model.encode(texts, max_length=model.passage_max_length), dtype=np.float32)
    ceiling = in_process_ceiling(model, texts, args.clients)
    del model
    runs = {
        "batched": (["--max-batch-tokens", str(args.max_batch_tokens), "--max-wait-ms", str(args.max_wait_ms)], args.clients),
        "unbatched": (["--max-batch-tokens", "1", "--max-wait-ms", "0"], args.clients),
        "sequential": (["--max-batch-tokens", "1", "--max-wait-ms", "0"], 1),
    }
    results = [run_one(name, args, texts, direct, *runs[name]) for name in args.runs.split(",")]
    by = {r["run"]: r for r in results}
    if "batched" in by and "unbatched" in by:
        print(f"batched / unbatched throughput: {by['batched']['requests_per_s'] / by['unbatched']['requests_per_s']:.2f}x")
    if "batched" in by and "sequential" in by:
        print(f"batched / sequential throughput: {by['batched']['requests_per_s'] / by['sequential']['requests_per_s']:.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "texts": len(texts), "in_process": ceiling, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
