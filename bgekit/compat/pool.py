"""FlagEmbedding's multi-process pool methods over :func:`bgekit.batching.map_devices`.

FlagEmbedding keeps one worker process per device alive between calls, fed through two queues. Here a pool is a
handle naming the devices and the single-device method its workers run; each ``encode_multi_process`` call fans
the chunks out with :func:`~bgekit.batching.map_devices` (one process per device for that call, a worker's error
re-raised in the parent). ``stop_multi_process_pool`` closes the handle, so a stopped pool cannot be used again.
"""
from __future__ import annotations

import gc
import math
from typing import Any, Callable, Sequence


class DevicePool(dict):
    """What ``start_multi_process_pool`` returns: ``{"devices", "method", "processes", "closed"}``.

    ``processes`` stays empty (workers live only during a call); ``method`` is the single-device method the
    workers run, e.g. ``"encode_single_device"``.
    """

    def __init__(self, devices: Sequence[str], method: str):
        super().__init__(devices=list(devices), method=method, processes=[], closed=False)


def make_worker(method: str) -> Callable:
    """A FlagEmbedding-style queue worker ``(target_device, model, input_queue, results_queue)`` that calls
    ``model.<method>(chunk, device=target_device, **kwargs)`` for each ``[chunk_id, chunk, kwargs]`` it reads and
    puts ``[chunk_id, result]``; ``None`` on the input queue stops it."""

    def worker(target_device: str, model: Any, input_queue: Any, results_queue: Any) -> None:
        while True:
            task = input_queue.get()
            if task is None:
                return
            chunk_id, items, kwargs = task
            results_queue.put([chunk_id, getattr(model, method)(items, device=target_device, **kwargs)])

    worker.__name__ = worker.__qualname__ = f"worker_{method}"
    worker.single_device_method = method
    return worker


def start_pool(owner: Any, process_target_func: Callable | None, default: str) -> DevicePool:
    """A pool for ``owner.target_devices`` running the method ``process_target_func`` names (see make_worker)."""
    method = default if process_target_func is None else getattr(process_target_func, "single_device_method", None)
    if method is None or not callable(getattr(owner, method, None)):
        valid = sorted(n for n in dir(type(owner)) if n.endswith("_multi_process_worker"))
        raise TypeError(f"process_target_func must be one of {type(owner).__name__}'s worker functions "
                        f"({', '.join(valid)}), got {process_target_func!r}")
    return DevicePool(owner.target_devices, method)


def stop_pool(pool: Any) -> None:
    """Close a pool handle; a later call with it raises ValueError."""
    check_pool(pool)
    pool["closed"] = True


def check_pool(pool: Any) -> DevicePool:
    if not isinstance(pool, DevicePool):
        raise TypeError(f"pool must be what start_multi_process_pool returned, got {type(pool).__name__}")
    if pool["closed"]:
        raise ValueError("this pool was stopped with stop_multi_process_pool; start a new one")
    return pool


def run_chunks(owner: Any, items: Sequence[Any], pool: Any, kwargs: dict, method: str | None = None) -> list[Any]:
    """Split ``items`` into one contiguous chunk per device, run ``owner.<method>`` on each device, results in order."""
    from bgekit.batching import map_devices

    pool = check_pool(pool)
    items = list(items)
    if not items:
        return []
    devices = pool["devices"]
    size = math.ceil(len(items) / len(devices))
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    work = [(method or pool["method"], chunk, kwargs) for chunk in chunks]
    return map_devices(owner._run_single_device, work, devices[:len(chunks)])


def release(owner: Any, pool_attr: str = "pool") -> None:
    """``stop_self_pool``: close the owner's pool, move the model back to the CPU and free cached memory."""
    pool = getattr(owner, pool_attr, None)
    if isinstance(pool, DevicePool) and not pool["closed"]:
        stop_pool(pool)
    setattr(owner, pool_attr, None)
    to = getattr(owner, "_to", None)
    model = getattr(owner, "model", None)
    if callable(to):
        to("cpu")
    elif model is not None and hasattr(model, "to"):
        model.to("cpu")
    from bgekit.backends import free_memory

    for device in getattr(owner, "target_devices", None) or []:
        free_memory(device)
    gc.collect()
