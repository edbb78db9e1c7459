"""Damage checks of a persisted index: its manifests (generation and segment) and file sizes, and its SQLite document table while reading.

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


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path} is missing; the index is damaged") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e}); the index is damaged") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object; the index is damaged")
    return data


def check_files(folder: str, files: dict) -> None:
    """Every listed file exists with its recorded size (a torn or truncated write shows here)."""
    for name, size in files.items():
        file = os.path.join(folder, name)
        actual = os.path.getsize(file) if os.path.isfile(file) else None
        if actual != size:
            raise InputError(f"{file}: {'missing' if actual is None else f'{actual} bytes'} where the manifest "
                             f"records {size} bytes; the index is damaged")


def read_manifest(folder: str) -> dict:
    """A generation's manifest.json, checked: valid JSON, format version 1 or 2, every listed file of its size.

    Version 1 (a complete copy per generation) still opens; version 2 lists ``segments``.

    Raises:
        InputError: what is damaged, naming the file.
    """
    path = os.path.join(folder, "manifest.json")
    manifest = _read_json(path)
    if manifest.get("format") != "bgekit-index" or manifest.get("version") not in (1, 2):
        version = manifest.get("version")
        hint = (f" (version {version} is newer than this bgekit reads: upgrade bgekit)"
                if isinstance(version, int) and version > 2 else "")
        raise InputError(f"{path}: not the manifest of a bgekit index of format version 1 or 2{hint}")
    needed = ("files", "model", "outputs", "count", "dense") + (("segments",) if manifest["version"] == 2 else ())
    missing = [k for k in needed if k not in manifest]
    if missing:
        raise InputError(f"{path}: the manifest lacks {', '.join(missing)}; the index is damaged")
    check_files(folder, manifest["files"])
    return manifest


def read_segment(folder: str) -> dict:
    """A segment's segment.json, checked like a manifest (format, version 1, file sizes).

    Raises:
        InputError: what is damaged, naming the file.
    """
    path = os.path.join(folder, "segment.json")
    if not os.path.isdir(folder):
        raise InputError(f"{folder} is missing; the index is damaged (restore the folder from a copy or rebuild)")
    meta = _read_json(path)
    if meta.get("format") != "bgekit-segment" or meta.get("version") != 1 or "files" not in meta or "rows" not in meta:
        raise InputError(f"{path}: not the description of a bgekit index segment (format version 1)")
    check_files(folder, meta["files"])
    return meta


@contextlib.contextmanager
def damage_named(docs_path: str) -> Iterator[None]:
    """Turn a sqlite3 error met while reading the document table into an InputError naming the file and the fix."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        raise InputError(f"{docs_path}: the index's document table is damaged ({e}); rebuild the index or "
                         "restore this folder from a copy") from None
