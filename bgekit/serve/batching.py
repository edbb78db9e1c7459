"""Request coalescing for the server, and its Prometheus metrics.

:class:`Batcher` gathers the inputs of requests that arrive together into one model call: the oldest waiting
request's kind (its key) is served next, with every other waiting request of that kind, up to a token budget.
A batch starts when the budget is reached, when the oldest request has waited ``max_wait_ms``, or as soon as
the model is free again (requests that arrive while it runs form the next batch). The queue is bounded in
inputs: a request that does not fit raises :class:`QueueFull` (the server answers 503 with Retry-After).

Model calls run on ``workers`` model threads (one by default), so the event loop never blocks on the model. A
request larger than the token budget is split into several jobs, so one large request never becomes one huge
model call and can share the workers with others. A request whose caller went away (its awaiting task was
cancelled, as the server does when the client disconnects) leaves the queue at once.

Example:
    >>> import asyncio
    >>> b = Batcher(lambda key, items: [x * 2 for x in items], max_wait_ms=1)
    >>> asyncio.run(b.submit("double", [1, 2], [1, 1]))
    [2, 4]
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence
from bgekit.errors import positive_int


class QueueFull(Exception):
    """The batching queue holds too many inputs to accept this request now."""

    def __init__(self, queued: int, limit: int, retry_after: int = 1):
        super().__init__(f"the server is busy: {queued} inputs are queued (limit {limit}); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class _Job:
    key: Hashable
    items: list
    tokens: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """Coalesce concurrent requests into model calls.

    Args:
        run: ``run(key, items) -> results``, blocking, one result per item, called on the model thread.
        max_batch_tokens: token budget of one model call (a larger single request still runs, alone).
        max_wait_ms: the longest the oldest request waits for company while the model is idle.
        max_queue_inputs: inputs allowed to wait; beyond it :meth:`submit` raises :class:`QueueFull`.
        metrics: a :class:`Metrics` to record batch sizes, queue depth and model time (optional).
        workers: model threads running batches concurrently (each calls ``run``; it must be thread-safe).
        min_fill: with several workers, while one computes, a free one waits (at most half a model call, 0.2 s
            at most) for this many inputs before starting; and idle workers share the waiting inputs, each
            taking at least this many.
    """

    def __init__(self, run: Callable[[Hashable, list], Sequence[Any]], max_batch_tokens: int = 16384,
                 max_wait_ms: float = 2.0, max_queue_inputs: int = 4096, metrics: "Metrics | None" = None,
                 workers: int = 1, min_fill: int = 16):
        for name, value in (("max_batch_tokens", max_batch_tokens), ("max_queue_inputs", max_queue_inputs),
                            ("workers", workers)):
            positive_int(value, name)
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be a non-negative number, got {max_wait_ms!r}")
        self.run, self.metrics = run, metrics
        self.max_batch_tokens, self.max_wait, self.max_queue_inputs = max_batch_tokens, max_wait_ms / 1000, max_queue_inputs
        self._pending: deque[_Job] = deque()
        self._queued = 0
        self.workers, self.min_fill = workers, min_fill
        self._busy, self._call_s = 0, 0.0  # workers computing; moving average of a model call's seconds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bgekit-model")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._wake: asyncio.Event | None = None

    @property
    def queued_inputs(self) -> int:
        return self._queued

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or not self._tasks or any(t.done() for t in self._tasks):
            for task in self._tasks:
                task.cancel()
            self._loop, self._wake = loop, asyncio.Event()
            self._tasks = [loop.create_task(self._worker()) for _ in range(self.workers)]

    async def submit(self, key: Hashable, items: list, tokens: Sequence[int]) -> list:
        """Queue ``items`` (with their token counts) for a model call of kind ``key``; await their results.

        Raises:
            QueueFull: the queue cannot take ``len(items)`` more inputs.
            Exception: whatever ``run`` raised for the batch holding these items.
        """
        self._ensure_worker()
        if self._queued + len(items) > self.max_queue_inputs:
            if self.metrics:
                self.metrics.inc("bgekit_queue_rejected_total")
            raise QueueFull(self._queued, self.max_queue_inputs)
        jobs = [self._enqueue(key, items[a:b], tokens[a:b]) for a, b in self._split(tokens)]
        self._gauge()
        self._wake.set()
        try:
            if len(jobs) == 1:
                return await jobs[0].future
            parts = await asyncio.gather(*(j.future for j in jobs))
        except asyncio.CancelledError:  # the caller went away: its queued work goes too
            for job in jobs:
                job.future.cancel()
            raise
        return [x for part in parts for x in part]

    def _split(self, tokens: Sequence[int]) -> list[tuple[int, int]]:
        """Spans of consecutive items that fit the token budget (one item may exceed it alone); with several
        workers, a large request is also cut into one part per worker, so they share it."""
        per_part = max(4 * self.min_fill, -(-len(tokens) // self.workers))
        spans, start, total = [], 0, 0
        for i, n in enumerate(tokens):
            if i > start and (total + n > self.max_batch_tokens or i - start >= per_part):
                spans.append((start, i))
                start, total = i, 0
            total += n
        return spans + [(start, len(tokens))]

    def _enqueue(self, key: Hashable, items: list, tokens: Sequence[int]) -> _Job:
        job = _Job(key, list(items), int(sum(tokens)), self._loop.create_future())
        job.future.add_done_callback(lambda f, job=job: self._dropped(job) if f.cancelled() else None)
        self._pending.append(job)
        self._queued += len(job.items)
        return job

    def _dropped(self, job: _Job) -> None:
        try:
            self._pending.remove(job)
        except ValueError:  # already taken by a worker (its result is discarded) or cleared
            return
        self._queued -= len(job.items)
        if self.metrics:
            self.metrics.inc("bgekit_cancelled_inputs_total", None, len(job.items))
        self._gauge()

    async def close(self) -> None:
        """Stop the worker (pending requests fail) and release the model thread."""
        for task in self._tasks:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        pending, self._pending = list(self._pending), deque()
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._queued = 0
        self._executor.shutdown(wait=False)

    # ---------------------------------------------------------------- internals
    def _waiting_tokens(self, key: Hashable) -> int:
        return sum(j.tokens for j in self._pending if j.key == key)

    def _take(self, key: Hashable, max_inputs: int | None = None) -> list[_Job]:
        """The oldest jobs of ``key`` that fit the token budget and ``max_inputs`` (at least one job), dequeued."""
        batch, total, rest, n = [], 0, deque(), 0
        cap = max_inputs or float("inf")
        for job in self._pending:
            if job.key == key and not job.future.done() and (
                    not batch or (total + job.tokens <= self.max_batch_tokens and n < cap)):
                batch.append(job)
                total += job.tokens
                n += len(job.items)
            elif not job.future.done():
                rest.append(job)
            else:  # cancelled; its callback has not run yet
                self._queued -= len(job.items)
        self._pending = rest
        self._queued -= sum(len(j.items) for j in batch)
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self._pending[0]
            while first in self._pending and self._waiting_tokens(first.key) < self.max_batch_tokens:
                remaining = first.arrived + self.max_wait - time.perf_counter()
                if remaining <= 0 and self._busy and self._waiting_inputs(first.key) < self.min_fill:
                    # another worker is computing: gather a fuller batch (small ones cost more per input)
                    remaining = first.arrived + min(0.2, max(self.max_wait, self._call_s / 2)) - time.perf_counter()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            free = self.workers - self._busy  # this one included
            batch = self._take(first.key, max(self.min_fill, -(-self._waiting_inputs(first.key) // max(free, 1))))
            self._gauge()
            if batch:
                self._busy += 1
                try:
                    await self._run_batch(loop, first.key, batch)
                finally:
                    self._busy -= 1
                    self._wake.set()  # waiting workers re-decide

    def _waiting_inputs(self, key: Hashable) -> int:
        return sum(len(j.items) for j in self._pending if j.key == key)

    async def _run_batch(self, loop, key: Hashable, batch: list[_Job]) -> None:
        items = [x for job in batch for x in job.items]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.run, key, items)
            if len(results) != len(items):
                raise RuntimeError(f"the model returned {len(results)} results for {len(items)} inputs")
        except Exception as e:  # every request of the batch gets the error; the worker keeps serving
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        finally:
            self._call_s = 0.8 * self._call_s + 0.2 * (time.perf_counter() - start)
            if self.metrics:
                self.metrics.observe("bgekit_batch_inputs", len(items))
                self.metrics.observe("bgekit_batch_tokens", sum(j.tokens for j in batch))
                self.metrics.observe("bgekit_model_seconds", time.perf_counter() - start)
        i = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result(list(results[i:i + len(job.items)]))
            i += len(job.items)

    def _gauge(self) -> None:
        if self.metrics:
            self.metrics.set("bgekit_queue_inputs", self._queued)


# ---------------------------------------------------------------- metrics

_BUCKETS = {
    "bgekit_request_duration_seconds": (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    "bgekit_model_seconds": (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    "bgekit_batch_inputs": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    "bgekit_batch_tokens": (16, 64, 256, 1024, 4096, 16384, 65536),
}
_HELP = {
    "bgekit_requests_total": ("counter", "HTTP requests by route and status code"),
    "bgekit_inputs_total": ("counter", "texts or pairs received, by route"),
    "bgekit_queue_rejected_total": ("counter", "requests refused with 503 because the queue was full"),
    "bgekit_cancelled_inputs_total": ("counter", "queued inputs dropped because their client went away"),
    "bgekit_queue_inputs": ("gauge", "inputs waiting in the batching queue"),
    "bgekit_request_duration_seconds": ("histogram", "request latency, by route"),
    "bgekit_model_seconds": ("histogram", "duration of one batched model call"),
    "bgekit_batch_inputs": ("histogram", "inputs per batched model call"),
    "bgekit_batch_tokens": ("histogram", "tokens per batched model call"),
}


class Metrics:
    """Counters, gauges and histograms rendered in the Prometheus text format (no dependency)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple], float] = {}
        self._hist: dict[tuple[str, tuple], list] = {}

    def inc(self, name: str, labels: dict | None = None, value: float = 1.0) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value

    def set(self, name: str, value: float, labels: dict | None = None) -> None:
        with self._lock:
            self._values[(name, tuple(sorted((labels or {}).items())))] = float(value)

    def observe(self, name: str, value: float, labels: dict | None = None) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            counts = self._hist.setdefault(key, [0] * (len(_BUCKETS[name]) + 1) + [0.0])
            for i, bound in enumerate(_BUCKETS[name]):
                if value <= bound:
                    counts[i] += 1
            counts[-2] += 1       # +Inf bucket = count
            counts[-1] += value   # sum

    def render(self) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        lines, done = [], set()
        with self._lock:
            values, hist = dict(self._values), {k: list(v) for k, v in self._hist.items()}
        for (name, labels), value in sorted(values.items()):
            self._header(lines, done, name)
            lines.append(f"{name}{_labels(labels)} {_num(value)}")
        for (name, labels), counts in sorted(hist.items()):
            self._header(lines, done, name)
            for bound, c in zip(_BUCKETS[name], counts):
                lines.append(f"{name}_bucket{_labels(labels + (('le', _num(bound)),))} {c}")
            lines.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {counts[-2]}")
            lines.append(f"{name}_sum{_labels(labels)} {_num(counts[-1])}")
            lines.append(f"{name}_count{_labels(labels)} {counts[-2]}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _header(lines: list, done: set, name: str) -> None:
        if name not in done:
            kind, text = _HELP.get(name, ("untyped", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            done.add(name)


def _labels(labels: tuple) -> str:
    if not labels:
        return ""
    esc = (str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, esc)) + "}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and math.isfinite(x) else repr(float(x))
