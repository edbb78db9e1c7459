"""Corpus encoding on Ray Data: a pool of actors, one model each, writing embedding shards in corpus order.

The corpus is read as a Ray dataset in pieces (.jsonl in byte ranges, see :mod:`bgekit.distributed.reading`;
.parquet by Ray's reader): it is never whole in any process, and the driver holds none of it. ``map_batches`` sends batches of rows to a pool of :class:`~bgekit.distributed.actor.EncodeActor`
actors (one GPU each where the cluster has GPUs, one CPU each otherwise). The driver receives the encoded
batches in corpus order (``preserve_order``) and writes them as shards (:mod:`bgekit.distributed.shards`) into a
temporary folder that becomes the output only when every row is encoded.

Failures: an actor process that dies is restarted and its batch retried (``retries`` times); a row that cannot be
read or encoded is reported with its id and row number. Either way nothing is written to the output.

Example:
    >>> from bgekit.distributed import encode_to_shards                             # doctest: +SKIP
    >>> shards = encode_to_shards("corpus.jsonl", "emb", "BAAI/bge-m3", sparse=True)  # doctest: +SKIP
    >>> shards.count, shards.dense().shape                                          # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterator

import numpy as np

from bgekit.distributed.actor import KINDS, EncodeActor, ModelLoader, RowFormat
from bgekit.distributed.reading import corpus_dataset
from bgekit.distributed.shards import ShardSet, ShardWriter, check_target
from bgekit.errors import BgekitError, InputFileError, UsageError
from bgekit.types import SparseVector

FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}
MAX_REPORTED = 100  # failing rows collected before the job stops


class EncodeJobError(BgekitError):
    """A distributed encode that did not complete; nothing was written to the output.

    Attributes:
        failures: ``(row, id or None, message)`` of the failing rows (rows count from 0 in corpus order, blank
            jsonl lines not counted).
    """

    def __init__(self, message: str, failures: list[tuple[int, str, str]] | None = None, kind: str = "unexpected"):
        super().__init__(message)
        self.failures = failures or []
        self.kind = kind


def source_format(source: str) -> str:
    """"jsonl" or "parquet" for a file (or a folder of .parquet files); else a UsageError / InputFileError."""
    if "://" not in source:
        if not os.path.exists(source):
            raise InputFileError(f"corpus {source!r} does not exist")
        if os.path.isdir(source):
            if any(n.endswith(".parquet") for n in os.listdir(source)):
                return "parquet"
            raise InputFileError(f"corpus folder {source!r} holds no .parquet files")
    for suffix, fmt in FORMATS.items():
        if source.endswith(suffix):
            return fmt
    raise UsageError(f"corpus {source!r}: a Ray encode reads {' or '.join(FORMATS)} (a .parquet folder too)")


def encode_to_shards(source: str, output: str, model: str | Callable[[str], Any], *, kind: str = "passage",
                     sparse: bool = False, field: str = "text", corpus: bool = False, model_kwargs: dict | None = None,
                     concurrency: int | None = None, batch_size: int = 256, shard_rows: int = 32768,
                     use_gpu: bool | None = None, cpus_per_actor: float | None = None, address: str | None = None,
                     retries: int = 2, show_progress: bool = True) -> ShardSet:
    """Encode a corpus on Ray into a shard folder; its rows equal a single-process encode, in the same order.

    Args:
        source: a .jsonl file, a .parquet file or a folder of them (a path every Ray node can read).
        output: the shard folder (created; an earlier shard folder there is replaced once this one is complete).
        model: a model name or folder, or a picklable ``loader(device) -> embedder``.
        kind: "passage", "query" or "plain": the instruction applied, as ``bgekit encode --kind``.
        sparse: also write BGE-M3 lexical weights.
        field: the field holding the text.
        corpus: index corpus rules: an id per row, a ``title`` prepended (as ``bgekit index build``).
        model_kwargs: ``load_embedder`` keyword arguments (batch_size, dtype, passage_max_length ...).
        concurrency: actors (default: one per GPU; on CPUs, as many as fit in the cluster's CPUs less one, which
            is left for reading the corpus).
        batch_size: rows per actor call.
        shard_rows: rows per shard file.
        use_gpu: one GPU per actor (default: when the cluster has GPUs).
        cpus_per_actor: CPUs per CPU actor (its torch threads; default 1); a fraction lets actors share one.
        address: a Ray cluster to join ("auto", "HOST:PORT", "ray://HOST:10001"); default: the runtime of this
            process if one is running, else a new local one.
        retries: restarts of a dead actor and retries of its batch.
        show_progress: Ray Data's progress bars.

    Returns:
        The written :class:`~bgekit.distributed.shards.ShardSet`.

    Raises:
        EncodeJobError: rows that could not be read or encoded (ids named), or a Ray failure; nothing written.
    """
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    for name, value, low in (("batch_size", batch_size, 1), ("shard_rows", shard_rows, 1), ("retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")
    fmt = source_format(source)
    if "://" not in source:
        source = os.path.abspath(source)  # Ray's workers do not run in this process's working folder
    output = os.path.abspath(output)
    check_target(output)
    loader = ModelLoader(model, dict(model_kwargs or {})) if isinstance(model, str) else model
    if isinstance(model, str) and sparse:
        _check_m3(model)
    rows = RowFormat(field=field, corpus=corpus, jsonl=fmt == "jsonl")
    with ray_runtime(address) as ray, _data_context(show_progress):
        use_gpu, concurrency, cpus_per_actor = _resources(ray, use_gpu, concurrency, cpus_per_actor)
        # blocks of one actor call each: a 64 MB range or a parquet row group would otherwise keep one actor busy
        # while the others wait (Ray Data hands an actor whole blocks); streaming, and the order is kept
        ds = corpus_dataset(ray, source, fmt, field).repartition(target_num_rows_per_block=batch_size)
        ds = _map(ray, ds, loader, rows, (kind, sparse, use_gpu), concurrency, cpus_per_actor, batch_size, retries)
        info = {"model": model if isinstance(model, str) else repr(model), "kind": kind, "source": source,
                "field": field, "corpus_rules": corpus}
        return ShardSet(_write(ds, output, sparse, shard_rows, info))


def _map(ray: Any, ds: Any, loader: Any, rows: RowFormat, what: tuple[str, bool, bool], concurrency: int,
         cpus_per_actor: float, batch_size: int, retries: int) -> Any:
    """The encoding stage: ``map_batches`` over a pool of ``concurrency`` actors, restarts bounded by ``retries``."""
    import warnings

    kind, sparse, use_gpu = what
    with warnings.catch_warnings():
        # Ray 2.5x deprecates **ray_remote_args, but max_restarts / max_task_retries have no named parameter yet;
        # without them a batch that kills its actor every time would be retried forever (Ray Data's default).
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        return ds.map_batches(EncodeActor, batch_size=batch_size, batch_format="pyarrow",
                              fn_constructor_args=(loader, rows, kind, sparse, use_gpu),
                              compute=ray.data.ActorPoolStrategy(size=concurrency),
                              num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else cpus_per_actor,
                              max_restarts=retries, max_task_retries=retries)


def _check_m3(model: str) -> None:
    from bgekit import backends
    from bgekit.errors import ModelMismatch
    from bgekit.registry import resolve

    spec = resolve(model, folder=backends.locate(model))
    if spec.kind != "m3":
        raise ModelMismatch(f"sparse vectors need a BGE-M3 model; {model!r} is a {spec.kind} embedder")


@contextlib.contextmanager
def ray_runtime(address: str | None = None) -> Iterator[Any]:
    """The ``ray`` module with a runtime: this process's if running, else ``address``'s, else a new local one
    (``ray.init(address="local")``: a cluster started on this machine with ``ray start`` is joined only when named).

    A runtime this function started is shut down on exit.
    """
    import ray

    if ray.is_initialized():
        if address:
            raise UsageError(f"a Ray runtime is already running in this process; it cannot also join {address!r}")
        yield ray
        return
    # address="local": a new runtime on this machine even where `ray start` left one running (Ray would join it)
    kwargs = {"address": address} if address else {"address": "local", "include_dashboard": False}
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice.addFilter(_token_default_notice)
    try:
        ray.init(logging_level=logging.WARNING, **kwargs)
    finally:
        notice.removeFilter(_token_default_notice)
    try:
        yield ray
    finally:
        ray.shutdown()


def _token_default_notice(record: logging.LogRecord) -> bool:
    """False for Ray's notice that it turned on token authentication, its secure default, for a new local
    runtime: nothing for a bgekit user to do (the warning that authentication is *disabled* still shows)."""
    return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


@contextlib.contextmanager
def _data_context(show_progress: bool) -> Iterator[None]:
    """Ray Data in corpus order (preserve_order), progress bars as asked; the settings are restored after."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before = ctx.execution_options.preserve_order, ctx.enable_progress_bars
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, show_progress
    data_log = logging.getLogger("ray.data")  # its INFO lines ("execution finished in ...") are noise to a CLI user
    level = data_log.level
    data_log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = before
        data_log.setLevel(level)


def _resources(ray: Any, use_gpu: bool | None, concurrency: int | None,
               cpus_per_actor: float | None) -> tuple[bool, int, float]:
    """(use_gpu, actors, CPUs per actor), checked against what the cluster has.

    CPU actors must leave one CPU free: Ray Data's read tasks need one, and a pool holding every CPU waits for
    rows that are never read.
    """
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 0))
    use_gpu = gpus > 0 if use_gpu is None else bool(use_gpu)
    if use_gpu and not gpus:
        raise UsageError("use_gpu=True, but the Ray cluster has no GPUs")
    if use_gpu and cpus_per_actor is not None:
        raise UsageError("cpus_per_actor applies to CPU actors; with GPUs each actor takes one GPU")
    cpus_per_actor = 1.0 if cpus_per_actor is None else cpus_per_actor
    if isinstance(cpus_per_actor, bool) or not isinstance(cpus_per_actor, (int, float)) or not cpus_per_actor > 0:
        raise UsageError(f"cpus_per_actor must be a positive number, got {cpus_per_actor!r}")
    fit = gpus if use_gpu else int((cpus - 1) // cpus_per_actor)
    if concurrency is None:
        concurrency = fit
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"concurrency must be a positive integer, got {concurrency!r}")
    if concurrency > fit:
        have = (f"{gpus} GPUs (one per actor)" if use_gpu else
                f"{cpus:g} CPUs: {cpus_per_actor:g} per actor, and one left for reading the corpus")
        raise UsageError(f"concurrency {concurrency} does not fit: the Ray cluster has {have}, room for {fit} actors")
    return use_gpu, concurrency, cpus_per_actor


def _batches(ds: Any, progress: dict) -> Iterator[Any]:
    """The encoded batches in corpus order; a Ray failure becomes an EncodeJobError naming where it stopped."""
    it = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - Ray's errors have many classes; the message is kept
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            where = f" (last id {progress['last_id']!r})" if progress.get("last_id") is not None else ""
            raise EncodeJobError(f"the Ray job failed after {progress['rows']} rows{where}: {type(e).__name__}: "
                                 f"{first[:300]}") from e
        yield batch


def _write(ds: Any, output: str, sparse: bool, shard_rows: int, info: dict) -> str:
    """Stream the encoded batches into shards; commit only when no row failed."""
    progress: dict = {"rows": 0, "last_id": None}
    failures: list[tuple[int, str, str]] = []
    with ShardWriter(output, ("dense", "sparse") if sparse else ("dense",), shard_rows) as writer:
        try:
            for batch in _batches(ds, progress):
                row = progress["rows"]
                given = batch.column("id").to_pylist()
                ids = [str(row + k) if i is None else i for k, i in enumerate(given)]  # no id: the row number
                failures += [(row + k, given[k], err) for k, err in enumerate(batch.column("error").to_pylist()) if err]
                if not failures:
                    writer.add(ids, _dense(batch), _sparse(batch) if sparse else None)
                progress["rows"], progress["last_id"] = row + len(ids), ids[-1] if ids else progress["last_id"]
                if len(failures) >= MAX_REPORTED:
                    break
        except EncodeJobError as e:
            raise EncodeJobError(f"{e}; nothing was written to {output!r}", failures) from e.__cause__
        if failures:
            raise _failed(failures, progress["rows"], output)
        if not len(writer):
            raise EncodeJobError(f"no rows were read from {info['source']!r}; nothing was written to {output!r}",
                                 kind="input")
        return writer.commit(info)


def _failed(failures: list[tuple[int, str, str]], rows: int, output: str) -> EncodeJobError:
    shown = "; ".join(f"row {r} ({'no id' if i is None else f'id {i!r}'}): {m}" for r, i, m in failures[:5])
    more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
    stop = f", the job stopped after {MAX_REPORTED}" if len(failures) >= MAX_REPORTED else ""
    kind = "input" if all(m.startswith("unreadable row") for _, _, m in failures) else "unexpected"
    return EncodeJobError(f"{len(failures)} of {rows} rows failed{stop}; nothing was written to {output!r}: "
                          f"{shown}{more}", failures, kind)


def _dense(batch: Any) -> np.ndarray:
    col = batch.column("dense").combine_chunks()
    dim = col.type.list_size
    return col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


def _sparse(batch: Any) -> list[SparseVector]:
    idx = batch.column("sparse_indices").combine_chunks()
    val = batch.column("sparse_values").combine_chunks()
    offsets = idx.offsets.to_numpy()
    offsets = offsets - offsets[0]  # a sliced list array's offsets start where the slice does
    flat_i = idx.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    flat_v = val.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return [SparseVector(flat_i[a:b], flat_v[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
