"""Serving load test on loopback: `bgekit serve` under 64 concurrent clients against the model's own ceiling.

One run prints:

1. **The in-process ceiling**: the model alone in this process, full batches, no HTTP: texts/s of the server's
   own layout (``--workers`` threads, each single-threaded, encoding length-sorted batches in parallel) and of
   one multi-threaded stream (torch's default threads); the higher is the ceiling.
   Both also as texts per CPU-second of this process: a measure that stays fair when other processes
   share the machine.
2. **The server**: `bgekit serve` (its defaults, plus ``--server-arg``) in a subprocess on 127.0.0.1 (a free port),
   driven with ``POST /v1/embeddings`` from ``--clients`` concurrent keep-alive connections for ``--seconds``
   (and at most ``--max-requests``), with requests of 8 texts and of 1 text (SciFact queries). For each: texts/s
   and its ratio to the ceiling, p50/p99 latency, errors, and texts per server CPU-second (and its ratio to the
   in-process workers' texts per CPU-second: the server's overhead, whatever the neighbours do).
3. **Beside a noisy neighbour**: the 8-text run again while one busy single-threaded process spins on this
   machine: texts/s, work per server CPU-second against the quiet run, p99 against the quiet run's. With
   ``--compare-threads``, the same two runs for a server with one worker on torch's default threads (the old
   default), so the two defaults can be compared.

Every answer is checked against the library's output for its texts (``model.encode`` in this process): the
largest absolute difference and mix-ups (an answer nearest to another text's vector). No request may be lost:
sent == answered. Clients and server share the machine: on a 2-core box the load generator costs CPU too.

With ``--overhead``, where the gap to the ceiling goes: the server's CPU per request with the model replaced by a
stub, and the model's own CPU per text in unsorted batches of the sizes a server forms.

    python benchmarks/bench_serve.py [--seconds 15] [--clients 64] [--compare-threads] [--overhead] [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact")


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


def start_server(args, extra: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "bgekit", "serve", "--model", args.model, "--host", "127.0.0.1", "--port", str(port),
           "--max-queue", "100000"] + (["--dtype", args.dtype] if args.dtype else []) + extra + args.server_arg
    env = {**os.environ, "PYTHONPATH": os.path.join(HERE, "..") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    for line in proc.stderr:  # the ready line
        if "ready on" in line:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, port
        if time.time() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {proc.stderr.read()[-2000:]}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


async def drive(port: int, texts: list[str], per_request: int, clients: int, seconds: float, max_requests: int) -> dict:
    latencies, statuses, answers, sent = [], [], [], [0]

    async def client(worker: int, deadline: float) -> None:
        conn, i = Connection(port), worker * per_request
        try:
            while time.perf_counter() < deadline and sent[0] < max_requests:
                sent[0] += 1
                idx = [(i + j) % len(texts) for j in range(per_request)]
                i += clients * per_request
                start = time.perf_counter()
                try:
                    status, body = await conn.post("/v1/embeddings", {"input": [texts[k] for k in idx],
                                                                      "encoding_format": "base64"})
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
    await warm.post("/v1/embeddings", {"input": texts[:per_request]})
    warm.close()
    start = time.perf_counter()
    await asyncio.gather(*(client(w, start + seconds) for w in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    ok = sum(1 for s in statuses if s == 200)
    return {"clients": clients, "texts_per_request": per_request, "sent": sent[0], "answered": len(statuses),
            "ok": ok, "errors": len(statuses) - ok, "seconds": round(elapsed, 2),
            "texts_per_s": round(ok * per_request / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "_answers": answers}


def check(answers: list, direct: np.ndarray) -> dict:
    import base64

    idx, got = [], []
    for rows, body in answers:
        idx += rows
        got += [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in json.loads(body)["data"]]
    if not got:
        return {"max_abs_diff": None, "mixups": 0}
    idx, got = np.asarray(idx), np.stack(got)
    nearest = (got @ direct.T).argmax(axis=1)
    same = direct[nearest] == direct[idx]  # identical texts share a vector
    return {"max_abs_diff": float(np.abs(got - direct[idx]).max()), "mixups": int((~same.all(axis=1)).sum())}


def neighbour() -> subprocess.Popen:
    """One busy single-threaded process (a pure-Python spin loop)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run_one(name: str, args, texts, direct, extra: list[str], per_request: int, busy: bool, ceiling: float,
            cpu_ceiling: float) -> dict:
    """One server run; ``ceiling`` / ``cpu_ceiling``: the model's in-process texts/s and texts per CPU-second."""
    proc, port = start_server(args, extra)
    noisy = neighbour() if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        cpu0 = cpu_seconds(proc.pid)
        result = asyncio.run(drive(port, texts, per_request, args.clients, args.seconds, args.max_requests))
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        if noisy is not None:
            noisy.kill()
            noisy.wait()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    result.update(check(result.pop("_answers"), direct))
    texts_done = result["ok"] * per_request
    result.update(run=name, server_cpu_s=round(cpu, 2), texts_per_cpu_s=round(texts_done / max(cpu, 1e-9), 1),
                  ratio_to_ceiling=round(result["texts_per_s"] / ceiling, 3))
    result["cpu_ratio_to_in_process"] = round(result["texts_per_cpu_s"] / cpu_ceiling, 3)
    print(f"{name:>16}  {per_request} text/req  {result['texts_per_s']:>7.1f} texts/s ({result['ratio_to_ceiling']:.0%} "
          f"of ceiling)  p50 {result['p50_ms']:>7.1f} ms  p99 {result['p99_ms']:>7.1f} ms  "
          f"{result['texts_per_cpu_s']:>6.1f} texts/server-CPU-s ({result['cpu_ratio_to_in_process']:.0%} of in-process)  errors {result['errors']}  "
          f"sent/answered {result['sent']}/{result['answered']}  max|diff| {result['max_abs_diff'] or 0:.1e}  "
          f"mix-ups {result['mixups']}", flush=True)
    return result


def in_process_ceiling(model, texts: list[str], workers: int, batch: int, seconds: float) -> dict:
    """Texts/s of the model alone: ``workers`` single-threaded threads in parallel, and one default-threaded stream."""
    import copy
    from concurrent.futures import ThreadPoolExecutor

    import torch

    default_threads = torch.get_num_threads()
    replicas = []
    for _ in range(workers):
        twin = copy.copy(model)
        twin.tokenizer = copy.deepcopy(model.tokenizer)
        replicas.append(twin)

    def timed(fn) -> tuple[float, float]:
        """(texts/s, texts per CPU-second of this process)."""
        fn(texts[: batch * 4])  # warm-up
        done, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            done += fn(texts)
        return done / (time.perf_counter() - start), done / (time.process_time() - cpu)

    def parallel(chunk: list[str]) -> int:
        parts = [chunk[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda rp: rp[0].encode(rp[1], batch_size=batch, show_progress=False), zip(replicas, parts)))
        return len(chunk)

    def stream(chunk: list[str]) -> int:
        model.encode(chunk, batch_size=batch, show_progress=False)
        return len(chunk)

    torch.set_num_threads(1)
    workers_rate, workers_cpu = timed(parallel)
    torch.set_num_threads(default_threads)
    stream_rate, stream_cpu = timed(stream)
    out = {"workers": workers, "workers_texts_per_s": round(workers_rate, 1), "torch_threads": default_threads,
           "stream_texts_per_s": round(stream_rate, 1), "ceiling_texts_per_s": round(max(workers_rate, stream_rate), 1),
           "workers_texts_per_cpu_s": round(workers_cpu, 1), "stream_texts_per_cpu_s": round(stream_cpu, 1)}
    print(f"in-process ceiling (batches of {batch}): {workers} single-threaded workers {out['workers_texts_per_s']} "
          f"texts/s ({out['workers_texts_per_cpu_s']} per CPU-s); one stream on {default_threads} torch threads "
          f"{out['stream_texts_per_s']} texts/s ({out['stream_texts_per_cpu_s']} per CPU-s); ceiling "
          f"{out['ceiling_texts_per_s']} texts/s", flush=True)
    return out


def overhead(args, texts: list[str], model) -> None:
    """Where the server's time goes besides the model: its CPU per request with a stub model (real HTTP, clients
    in a child process), and the model's CPU per text in random (unsorted) batches of the sizes the server forms."""
    import random

    from bgekit.serve import ServeConfig, create_app
    from bgekit.serve.runner import bind, run

    app = create_app(embedder=model, config=ServeConfig(workers=2))
    app.state.batcher.run = lambda key, items: [np.full(model.dim, 0.1, np.float32) for _ in items]  # no model
    sock = bind("127.0.0.1", 0)
    ready = threading.Event()
    threading.Thread(target=run, args=(app, sock), kwargs={"on_ready": ready.set}, daemon=True).start()
    ready.wait(30)
    n = 3000
    for per in (1, 8):
        code = (f"import asyncio, sys; sys.path.insert(0, {HERE!r}); from bench_serve import drive, load_texts; "
                f"asyncio.run(drive({sock.getsockname()[1]}, load_texts({len(texts)}), {per}, {args.clients}, 1e9, {n}))")
        cpu = time.process_time()
        subprocess.run([sys.executable, "-c", code], check=True)
        print(f"server without the model, {per} text/req: {(time.process_time() - cpu) / n * 1000:.2f} ms CPU per request "
              "(HTTP, JSON, validation, token counting, batching)", flush=True)
    random.seed(0)
    for size in (8, 32, 128):
        batches = [random.sample(texts, size) for _ in range(max(2, 256 // size))]
        model.encode(batches[0], batch_size=16, show_progress=False)
        cpu = time.process_time()
        for b in batches:
            model.encode(b, batch_size=16, show_progress=False)
        print(f"model alone, random batches of {size}: {(time.process_time() - cpu) / (len(batches) * size) * 1000:.2f} "
              "ms CPU per text (the ceiling's length-sorted batches pad less)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=15.0, help="per run (the ceiling: per layout)")
    ap.add_argument("--max-requests", type=int, default=50000)
    ap.add_argument("--texts", type=int, default=1000, help="distinct texts (SciFact queries)")
    ap.add_argument("--runs", default="quiet8,quiet1,busy8", help="of quiet8, quiet1, busy8")
    ap.add_argument("--compare-threads", action="store_true",
                    help="also run quiet8 and busy8 with one worker on torch's default threads (the old default)")
    ap.add_argument("--overhead", action="store_true", help="also measure the server's CPU per request without "
                    "the model, and the model's CPU per text in unsorted batches (where the gap to the ceiling goes)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--server-arg", action="append", default=[], help="extra `bgekit serve` argument, repeatable "
                    "(e.g. --server-arg=--max-wait-ms --server-arg=5)")
    args = ap.parse_args()

    from bgekit.backends import cpu_workers
    from bgekit.cli.serve import SERVE_CPU_BATCH
    from bgekit.loading import load_embedder

    texts = load_texts(args.texts)
    model = load_embedder(args.model, devices="cpu", **({"dtype": args.dtype} if args.dtype else {}))
    direct = np.asarray(model.encode(texts, max_length=model.passage_max_length, show_progress=False), dtype=np.float32)
    ceiling = in_process_ceiling(model, texts, cpu_workers(), SERVE_CPU_BATCH, min(args.seconds, 10.0))
    if args.overhead:
        import torch

        torch.set_num_threads(1)
        overhead(args, texts, model)
    del model
    top = ceiling["ceiling_texts_per_s"]
    plans = {"quiet8": ([], 8, False), "quiet1": ([], 1, False), "busy8": ([], 8, True)}
    names = args.runs.split(",")
    if args.compare_threads:
        old = ["--workers", "1", "--threads", str(ceiling["torch_threads"])]
        plans.update({"quiet8-1worker": (old, 8, False), "busy8-1worker": (old, 8, True)})
        names += ["quiet8-1worker", "busy8-1worker"]
    cpu_top = ceiling["workers_texts_per_cpu_s"]
    results = {n: run_one(n, args, texts, direct, *plans[n], top, cpu_top) for n in names}
    for quiet, busy in (("quiet8", "busy8"), ("quiet8-1worker", "busy8-1worker")):
        if quiet in results and busy in results:
            q, b = results[quiet], results[busy]
            print(f"beside a busy neighbour ({busy}): work per server CPU-second {b['texts_per_cpu_s'] / q['texts_per_cpu_s']:.0%} "
                  f"of quiet (target >= 85%), p99 {b['p99_ms'] / q['p99_ms']:.2f}x quiet (target <= 2x), "
                  f"throughput {b['texts_per_s'] / q['texts_per_s']:.0%} of quiet", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"model": args.model, "texts": len(texts), "in_process": ceiling, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
