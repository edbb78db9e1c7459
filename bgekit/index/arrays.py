"""``.npy`` files written a row chunk at a time (the vectors of an index segment or of a streamed evaluation)."""
from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

_HEADER = 128               # bytes of every .npy header this module writes (room for any shape it writes)


class NpyAppender:
    """Write a .npy file row chunk by row chunk; the header is fixed up with the final shape on close."""

    def __init__(self, path: str, dtype: Any, tail: tuple[int, ...] = ()):
        self.path, self.dtype, self.tail, self.rows = path, np.dtype(dtype), tuple(tail), 0
        self.file = open(path, "wb")
        self.file.write(self._header((0,) + self.tail))

    def _header(self, shape: tuple[int, ...]) -> bytes:
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape})
        body = text.encode("latin1").ljust(_HEADER - 10 - 1) + b"\n"
        if len(body) != _HEADER - 10:  # pragma: no cover - shapes here are 1-D or 2-D
            raise ValueError(f"npy header for shape {shape} does not fit {_HEADER} bytes")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body

    def append(self, array: Any) -> None:
        arr = np.ascontiguousarray(array, dtype=self.dtype)
        if arr.shape[1:] != self.tail:
            raise ValueError(f"{os.path.basename(self.path)}: rows of shape {arr.shape[1:]}, expected {self.tail}")
        self.file.write(arr.tobytes())
        self.rows += len(arr)

    def close(self) -> None:
        if self.file.closed:
            return
        self.file.seek(0)
        self.file.write(self._header((self.rows,) + self.tail))
        self.file.close()
