"""The one batching loop: length-sorted batches, order restored, out-of-memory back-off, device fan-out.

Every embedder and reranker runs its forward passes through :func:`run_sorted`; multi-device work goes
through :func:`map_devices`.
"""
from __future__ import annotations

import logging
import queue
import traceback
from typing import Any, Callable, Sequence

import numpy as np

from bgekit.errors import positive_int
from bgekit.backends import free_memory, is_oom

logger = logging.getLogger(__name__)


def check_texts(texts: Any, name: str = "sentences") -> tuple[list[str], bool]:
    """Validate a text or list of texts; returns (list, was_single_string).

    Raises:
        TypeError: None, a non-list, or an item that is not a string (naming its index).
    """
    if isinstance(texts, str):
        return [texts], True
    if texts is None:
        raise TypeError(f"{name} must be a string or a list of strings, got None")
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(t).__name__}: {t!r:.60}")
    return list(texts), False


def check_batch_size(batch_size: Any) -> int:
    return positive_int(batch_size, "batch_size")


def length_order(lengths: Sequence[int]) -> np.ndarray:
    """Indices sorting by descending length; stable, so equal lengths keep their input order."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def run_sorted(
    items: Sequence[Any],
    lengths: Sequence[int],
    forward: Callable[[list[Any]], Any],
    batch_size: int,
    device: str = "cpu",
    desc: str = "Batches",
    show_progress: bool | None = None,
) -> list[Any]:
    """Run ``forward`` over length-sorted batches of ``items``; return per-item results in input order.

    ``forward(batch)`` returns one result per item: a tensor or array whose first dimension is the batch,
    or a list. On an out-of-memory error (and only then) the batch is retried at half the size; at batch
    size 1 a RuntimeError says what to try. Other errors propagate unchanged.

    Args:
        items: what to batch (tokenized features, pairs...).
        lengths: a length per item, for sorting.
        forward: the model call for one batch.
        batch_size: the starting batch size.
        device: for freeing cached memory after an OOM.
        desc: progress-bar label.
        show_progress: None shows a bar for 256 items or more.

    Example:
        >>> run_sorted(["aa", "b", "ccc"], [2, 1, 3], lambda b: [s.upper() for s in b], batch_size=2)
        ['AA', 'B', 'CCC']
    """
    from tqdm.auto import tqdm

    batch_size = check_batch_size(batch_size)
    order = length_order(lengths)
    results: list[Any] = [None] * len(items)
    show = len(items) >= 256 if show_progress is None else show_progress
    bar = tqdm(total=len(items), desc=desc, disable=not show)
    start = 0
    while start < len(items):
        idx = order[start:start + batch_size]
        try:
            out = forward([items[i] for i in idx])
        except Exception as e:  # noqa: BLE001 - re-raised unless it is an out-of-memory error
            if not is_oom(e):
                raise
            free_memory(device)
            if batch_size == 1:
                raise RuntimeError(
                    f"out of memory on {device} even at batch size 1 (item {int(idx[0])}, length {lengths[idx[0]]}). "
                    "Lower max_length, use use_fp16/use_bf16, or run on a device with more memory."
                ) from e
            batch_size = max(1, batch_size // 2)
            logger.warning("out of memory on %s; retrying with batch_size=%d", device, batch_size)
            continue
        if len(out) != len(idx):
            raise RuntimeError(f"forward returned {len(out)} results for a batch of {len(idx)}")
        for j, i in enumerate(idx):
            results[i] = out[j]
        start += len(idx)
        bar.update(len(idx))
    bar.close()
    return results


def stack(rows: list[Any]):
    """Stack per-item tensors or arrays (all the same shape) into one tensor or array."""
    import torch

    if rows and isinstance(rows[0], torch.Tensor):
        return torch.stack(rows)
    return np.stack(rows)


# ---------------------------------------------------------------- several devices

_READY = -1  # a worker's first message: it has finished starting

_GUARD_HINT = (
    "With several devices bgekit starts one process per device with 'spawn', which imports your script again "
    "in each of them; put the code that creates the model and encodes under `if __name__ == \"__main__\":` "
    "(see 'Safe importing of main module' in Python's multiprocessing docs), or pass a single device."
)


def _worker(rank: int, device: str, inbox, outbox) -> None:
    outbox.put((_READY, True, rank))
    while True:
        task = inbox.get()
        if task is None:
            return
        chunk_id, fn, args = task
        try:
            outbox.put((chunk_id, True, fn(device, *args)))
        except BaseException as e:  # noqa: BLE001 - reported to the parent, never swallowed
            outbox.put((chunk_id, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _check_not_bootstrapping() -> None:
    """In a spawned child that is still importing the parent's script, refuse to start a pool (a clear error
    instead of multiprocessing's bootstrapping RuntimeError)."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError("a multi-device encode was started while a worker process was still starting. " + _GUARD_HINT)


def map_devices(fn: Callable, chunks: list[tuple], devices: list[str], timeout: float = 1.0) -> list[Any]:
    """Run ``fn(device, *chunk)`` for every chunk on a pool of one process per device; results in order.

    ``fn`` must be picklable (a module-level function or a bound method of a picklable object); it travels
    with each task, so starting a process sends almost nothing and never blocks. A worker's exception is
    re-raised here as RuntimeError with the worker's traceback; a worker that dies while starting (most often:
    a script without an ``if __name__ == "__main__":`` guard) or later without answering (killed, segfault) is
    reported instead of hanging.
    """
    import torch.multiprocessing as mp

    _check_not_bootstrapping()
    ctx = mp.get_context("spawn")
    inbox, outbox = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, d, inbox, outbox), daemon=True)
             for r, d in enumerate(devices)]
    ok = False
    try:
        for p in procs:
            p.start()
        for i, chunk in enumerate(chunks):
            inbox.put((i, fn, chunk))
        results = _collect(outbox, procs, devices, len(chunks), timeout)
        ok = True
        return [results[i] for i in range(len(chunks))]
    finally:
        _shut_down(procs, inbox, graceful=ok)


def _collect(outbox, procs: list, devices: list[str], n: int, timeout: float) -> dict[int, Any]:
    """Wait for ``n`` answers; RuntimeError for a worker's error or a worker that died without answering."""
    results: dict[int, Any] = {}
    ready: set[int] = set()
    while len(results) < n:
        try:
            chunk_id, ok, value = outbox.get(timeout=timeout)
        except queue.Empty:
            dead = [(r, d, p.exitcode) for r, (d, p) in enumerate(zip(devices, procs)) if p.exitcode is not None]
            if dead:
                starting = [(d, code) for r, d, code in dead if r not in ready]
                if starting:
                    raise RuntimeError(f"worker process(es) {starting} (device, exit code) died while starting, "
                                       "before running any work. " + _GUARD_HINT) from None
                raise RuntimeError("worker process(es) died without an answer: "
                                   f"{[(d, code) for _, d, code in dead]} (device, exit code)") from None
            continue
        if chunk_id == _READY:
            ready.add(value)
            continue
        if not ok:
            raise RuntimeError(f"worker failed on chunk {chunk_id}: {value}")
        results[chunk_id] = value
    return results


def _shut_down(procs: list, inbox, graceful: bool) -> None:
    started = [p for p in procs if p.pid is not None]
    if not graceful:
        inbox.cancel_join_thread()  # a dead worker may never read what is queued; do not wait for it at exit
        for p in started:
            if p.is_alive():
                p.terminate()
    else:
        for _ in started:
            inbox.put(None)
    for p in started:
        p.join(timeout=10)
        if p.is_alive():
            p.terminate()
