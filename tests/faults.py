"""Simulated crashes for the index's write path, shared by the index tests: every write step is an fsync
(``bgekit.index.generation._fsync_path``), so a test counts them and then fails each one in turn."""
from __future__ import annotations

import contextlib
from typing import Callable

import pytest

from bgekit.index import generation as G


def record_fsyncs(monkeypatch, action: Callable[[], object]) -> list[str]:
    """The paths ``action()`` fsyncs, in order (the write steps of a change)."""
    calls, real = [], G._fsync_path
    monkeypatch.setattr(G, "_fsync_path", lambda p: (calls.append(p), real(p))[1])
    try:
        action()
    finally:
        monkeypatch.setattr(G, "_fsync_path", real)
    return calls


@contextlib.contextmanager
def crash_at_fsync(monkeypatch, stop: int):
    """Within the block, the ``stop``-th fsync (from 0) raises OSError "simulated crash", which the block must
    raise; the real fsync is back afterwards."""
    count, real = iter(range(1 << 30)), G._fsync_path

    def failing(path):
        if next(count) == stop:
            raise OSError(f"simulated crash at step {stop}")
        real(path)

    monkeypatch.setattr(G, "_fsync_path", failing)
    try:
        with pytest.raises(OSError, match="simulated crash"):
            yield
    finally:
        monkeypatch.setattr(G, "_fsync_path", real)
