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
    "bgekit.cli.merge",
]


class Parser(argparse.ArgumentParser):
    """argparse with a short usage error: the problem and where to read the options (two lines, exit code 2),
    not the whole usage block. Subcommand parsers are of this class too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n  (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from bgekit import __version__

    parser = Parser(prog="bgekit", description="Search and RAG retrieval in the BGE tradition.",
                                     epilog="Exit codes: 0 ok, 1 unexpected, 2 usage, 3 input, 4 model, 5 I/O, "
                                            "6 missing package, 130 interrupted (docs/errors.md).")
    parser.add_argument("--version", action="version", version=f"bgekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error (or BGEKIT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``bgekit`` command; returns its exit code (docs/errors.md)."""
    from bgekit.cli.errors import StderrHandler, debug_requested, report, silence_stdout

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[StderrHandler()])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader (`| head`) stopped early: that is not a failure
        silence_stdout()
        return 0
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        return report(e, args.command, debug_requested(args.debug))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
