"""Error classes that say what kind of problem a failure is, for the CLI's exit codes (docs/errors.md).

Each class also derives from the built-in exception a caller would expect (ValueError, FileNotFoundError,
OSError), so ``except ValueError`` keeps working. Importing this module imports nothing heavy.

Exit codes (``bgekit`` command):

====  ===========  ==========================================================================
code  class        meaning
====  ===========  ==========================================================================
0     ok           success (also when a reader such as ``| head`` stops reading early)
1     unexpected   a failure bgekit did not foresee (run with ``--debug`` for the traceback)
2     usage        an option, a value or a combination of options that cannot apply; a device
                   that does not exist on this machine
3     input        an input file or dataset that is missing, unreadable or malformed
4     model        a model that cannot be found or loaded, or does not fit the options
5     io           an output that cannot be written, a full disk, an unreachable service
6     missing      an optional package is not installed (the message names the extra)
130   interrupted  Ctrl-C
====  ===========  ==========================================================================
"""
from __future__ import annotations

EXIT_CODES = {"ok": 0, "unexpected": 1, "usage": 2, "input": 3, "model": 4, "io": 5, "missing": 6,
              "interrupted": 130}


class BgekitError(Exception):
    """Base of bgekit's classified errors; ``kind`` is a key of :data:`EXIT_CODES`."""

    kind = "unexpected"


class UsageError(BgekitError, ValueError):
    """An argument or a combination of arguments that cannot apply."""

    kind = "usage"


class DeviceError(UsageError):
    """A device that does not exist on this machine."""


class InputError(BgekitError, ValueError):
    """Input data that is malformed (the message names the file and line, or the item)."""

    kind = "input"


class InputFileError(BgekitError, FileNotFoundError):
    """An input path that is missing, a folder where a file is expected, or unreadable."""

    kind = "input"


class ModelError(BgekitError, OSError):
    """A model that cannot be found or loaded (the message names the file)."""

    kind = "model"


class ModelFileError(BgekitError, FileNotFoundError):
    """A model path that does not exist or is not a model folder."""

    kind = "model"


class ModelMismatch(BgekitError, ValueError):
    """A model that does not fit an option (dense model with --retrieval sparse, a length beyond its limit)."""

    kind = "model"


class OutputError(BgekitError, OSError):
    """An output that cannot be written, or a service that cannot be reached."""

    kind = "io"


def exit_code(kind: str) -> int:
    """The exit code of an error kind; unknown kinds raise KeyError naming the valid ones."""
    if kind not in EXIT_CODES:
        raise KeyError(f"unknown error kind {kind!r}; valid: {', '.join(EXIT_CODES)}")
    return EXIT_CODES[kind]


def positive_int(value: object, name: str, *, allow_none: bool = False) -> "int | None":
    """``value`` as an int when it is a positive integer (not a bool); else a :class:`UsageError` naming ``name``.

    >>> positive_int(3, "batch_size")
    3
    >>> positive_int(0, "--top_k")
    Traceback (most recent call last):
    ...
    bgekit.errors.UsageError: --top_k must be a positive integer, got 0
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:  # type: ignore[operator]
        tail = " or None" if allow_none else ""
        raise UsageError(f"{name} must be a positive integer{tail}, got {value!r}")
    return int(value)  # type: ignore[call-overload]
