"""Damage checks of a persisted index: its manifest and file sizes, and its SQLite document table while reading.

Every finding is an :class:`~bgekit.errors.InputError` naming the damaged file, so the CLI reports it in one line
(exit code 3) instead of a traceback from json, os or sqlite3.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from typing import Iterator

from bgekit.errors import InputError


def read_manifest(folder: str) -> dict:
    """A generation's manifest.json, checked: valid JSON, format version 1, every listed file of its recorded size.

    Raises:
        InputError: what is damaged, naming the file.
    """
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path} is missing; the index is damaged") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); the index is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "bgekit-index" or manifest.get("version") != 1:
        raise InputError(f"{path}: not the manifest of a bgekit index of format version 1")
    missing = [k for k in ("files", "model", "outputs", "count", "dense") if k not in manifest]
    if missing:
        raise InputError(f"{path}: the manifest lacks {', '.join(missing)}; the index is damaged")
    for name, size in manifest["files"].items():
        file = os.path.join(folder, name)
        actual = os.path.getsize(file) if os.path.isfile(file) else None
        if actual != size:
            raise InputError(f"{file}: {'missing' if actual is None else f'{actual} bytes'} where the manifest "
                             f"records {size} bytes; the index is damaged")
    return manifest


@contextlib.contextmanager
def damage_named(docs_path: str) -> Iterator[None]:
    """Turn a sqlite3 error met while reading the document table into an InputError naming the file and the fix."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise InputError(f"{docs_path}: the index's document table is damaged ({e}); rebuild the index or "
                         "restore this folder from a copy") from None
