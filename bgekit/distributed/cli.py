"""The ``--ray`` options of ``bgekit encode`` and ``bgekit index build`` (encoding on a Ray cluster).

``bgekit encode CORPUS -o FOLDER --ray`` writes embedding shards (:mod:`bgekit.distributed.shards`);
``bgekit index build ... --ray`` encodes the corpus the same way, then builds the index from the shards.
Nothing here imports Ray until a command runs with ``--ray``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from typing import Any, Iterator

from bgekit.cli.checks import positive_float, positive_int, refuse
from bgekit.errors import BgekitError, UsageError

# the Ray options -> their defaults; given without --ray they are an error
RAY_OPTIONS = {"--ray-address": None, "--ray-concurrency": None, "--ray-cpus-per-actor": None, "--ray-batch-size": 256,
               "--ray-shard-rows": 32768}


class MissingRay(BgekitError):
    """``--ray`` without the ``ray`` package."""

    kind = "missing"


def add_args(p: argparse.ArgumentParser) -> None:
    """Add --ray and its options to a command's parser."""
    g = p.add_argument_group("distributed encoding on Ray (pip install 'bgekit[ray]')")
    g.add_argument("--ray", action="store_true",
                   help="encode with a pool of Ray actors, one model each (a local Ray runtime, or --ray-address)")
    g.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="join a running Ray cluster: auto, HOST:6379 or ray://HOST:10001 (see `ray start --head`)")
    g.add_argument("--ray-concurrency", type=positive_int, default=None, metavar="N",
                   help="actors (default: one per GPU of the cluster, else as many as its CPUs less one hold)")
    g.add_argument("--ray-cpus-per-actor", type=positive_float, default=None, metavar="N",
                   help="CPU actors (no GPU in the cluster): CPUs, so torch threads, per actor (default: 1)")
    g.add_argument("--ray-batch-size", type=positive_int, default=256, metavar="N",
                   help="rows per actor call (default: 256); --batch-size is the model's forward batch")
    g.add_argument("--ray-shard-rows", type=positive_int, default=32768, metavar="N",
                   help="rows per shard file (default: 32768)")


def check(args: argparse.Namespace) -> bool:
    """True when ``--ray`` was given (checked: ray installed, no option that cannot apply); else refuse --ray-*."""
    if not args.ray:
        refuse(args, RAY_OPTIONS, "without --ray")
        return False
    if getattr(args, "device", None):
        raise UsageError("--device cannot apply with --ray: Ray gives each actor one GPU where the cluster has "
                         "GPUs, else one CPU")
    if getattr(args, "visual_weights", None):
        raise UsageError("--visual-weights cannot apply with --ray: the Ray encode runs text embedders only")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise MissingRay("this needs the 'ray' package: pip install 'bgekit[ray]'")
    return True


def check_index(args: argparse.Namespace) -> bool:
    """:func:`check` for ``bgekit index build``, which also refuses --colbert with --ray."""
    if not check(args):
        return False
    if args.colbert:
        raise UsageError("--colbert cannot apply with --ray: the Ray encode writes dense and sparse vectors only")
    return True


def _run(args: argparse.Namespace, source: str, output: str, model: str, model_kwargs: dict, **options: Any):
    from bgekit.distributed.ray_encode import encode_to_shards

    kwargs = {k: v for k, v in model_kwargs.items() if k != "devices"}
    return encode_to_shards(source, output, model, model_kwargs=kwargs, concurrency=args.ray_concurrency,
                            cpus_per_actor=args.ray_cpus_per_actor, batch_size=args.ray_batch_size,
                            shard_rows=args.ray_shard_rows,
                            address=args.ray_address, **options)


def encode(args: argparse.Namespace, model_kwargs: dict) -> int:
    """``bgekit encode ... --ray``: the corpus's embeddings (dense, + sparse with --sparse) as a shard folder."""
    from bgekit.distributed.ray_encode import source_format
    from bgekit.distributed.shards import check_target

    source_format(args.input)
    if args.output.endswith((".npy", ".jsonl")):
        raise UsageError(f"--output {args.output!r}: with --ray the output is a folder of shards; give a folder path")
    check_target(os.path.abspath(args.output))
    shards = _run(args, args.input, args.output, args.model, model_kwargs, kind=args.kind, sparse=args.sparse,
                  field=args.field or "text")
    print(f"encoded {shards.count} texts with {args.model} on Ray -> {shards.path} "
          f"({len(shards.manifest['shards'])} shards: {', '.join(shards.outputs)})", file=sys.stderr)
    return 0


@contextlib.contextmanager
def index_vectors(args: argparse.Namespace, docs: Any, model: Any, model_name: str, model_kwargs: dict) -> Iterator[Any]:
    """``bgekit index build ... --ray``: encode the corpus on Ray; yield a row source over its shards.

    The index build takes the rows a chunk at a time (``take(ids)``, ids checked against the streamed corpus),
    so neither the corpus nor its vectors are ever whole in memory. The shards go to a temporary folder beside
    the index and are removed when the build is done.
    """
    sparse = hasattr(model, "encode_multi") and not args.dense_only
    parent = os.path.dirname(os.path.abspath(args.index_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".bgekit-ray-shards.", dir=parent)
    try:
        shards = _run(args, args.corpus, os.path.join(tmp, "shards"), model_name, model_kwargs, kind="passage",
                      sparse=sparse, corpus=True)
        print(f"encoded {shards.count} documents with {model_name} on Ray", file=sys.stderr)
        if shards.count != len(docs):
            raise BgekitError(f"the Ray encode returned {shards.count} rows for {len(docs)} documents; nothing was built")
        yield shards.reader()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
