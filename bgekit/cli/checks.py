"""The CLI's validation layer: argument types and checks that run before any model loads or any text is encoded.

Every command calls these first, so a bad value, an option that cannot apply, a missing input or an output that
cannot be written fails in a second with one line, not after the expensive part.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Iterable

from bgekit.errors import OutputError, UsageError
from bgekit.io import check_input_file


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 and negative values are errors everywhere, never "the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (seconds, rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def check_input(path: str, option: str) -> str:
    """``path`` when it is a readable file; else InputFileError naming the option."""
    check_input_file(path, option)
    return path


def check_output(path: str | None, option: str, suffixes: Iterable[str] = ()) -> str | None:
    """``path`` when it can be written (its folder exists or can be created, and is writable); else OutputError.

    ``suffixes``: the endings the format needs (".npy"); another ending is a UsageError.
    """
    if path is None:
        return None
    suffixes = tuple(suffixes)
    if suffixes and not path.endswith(suffixes):
        raise UsageError(f"{option} {path!r}: this output is written as {' or '.join(suffixes)}; "
                         f"give a path ending in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise OutputError(f"{option} {path!r} is a folder; give a file path")
    _check_writable_folder(os.path.dirname(os.path.abspath(path)), f"{option} {path!r}")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path!r} exists and is not writable (permission denied)")
    return path


def check_output_dir(path: str, option: str) -> str:
    """``path`` when it is (or can be created as) a writable folder; else OutputError."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{option} {path!r} is a file; expected a folder")
    _check_writable_folder(path, f"{option} {path!r}")
    return path


def _check_writable_folder(folder: str, what: str) -> None:
    folder = os.path.abspath(folder)  # a relative new folder ("my-index") is checked against the working folder
    probe = folder
    while not os.path.exists(probe):  # the nearest existing ancestor decides whether it can be created
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise OutputError(f"{what}: {probe!r} is a file, so the folder {folder!r} cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: cannot write in {probe!r} (permission denied)")


def refuse(args: argparse.Namespace, options: dict[str, Any], reason: str) -> None:
    """UsageError when any of ``options`` (``--flag`` -> its default) was given: it cannot apply (``reason``)."""
    given = [flag for flag, default in options.items()
             if getattr(args, flag.lstrip("-").replace("-", "_"), default) not in (default, None)]
    if given:
        raise UsageError(f"{', '.join(given)} cannot apply {reason}")


def check_range(value: float | None, option: str, low: float | None = None, high: float | None = None) -> None:
    """UsageError unless low <= value <= high (None: unbounded)."""
    if value is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise UsageError(f"{option} must be in {bounds}, got {value}")


def check_devices(devices: Any) -> None:
    """DeviceError now (naming what this machine has) for a --device that does not exist, before any model loads."""
    if devices:
        from bgekit.backends import resolve_devices

        resolve_devices(devices)


def check_extras(*modules: str) -> None:
    """ModuleNotFoundError for the first optional module that is not installed (named with its extra by main)."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)
