"""Reading a .jsonl corpus in byte ranges (bgekit.distributed.reading): every line once, in order, whatever the
range size. No Ray needed: the ranges are read as the Ray tasks read them."""
import pytest

pytest.importorskip("pyarrow", reason="could not import pyarrow (pip install 'bgekit[ray]')")

from bgekit.distributed.reading import read_range  # noqa: E402


def test_ranges_of_every_size_give_every_line_once_in_order(tmp_path):
    lines = [b'{"id": 1}', b"", b'{"text": "caf\xc3\xa9"}', b"x" * 37, b"\xff\xfe not utf-8", b"", b"last\r"]
    data = b"\n".join(lines) + b"\n"
    expected = [line.rstrip(b"\r") for line in lines]
    path = tmp_path / "c.jsonl"
    for tail in (b"\n", b""):  # with and without a final newline
        path.write_bytes(data if tail else data.rstrip(b"\n"))
        size = path.stat().st_size
        for chunk in range(1, size + 2):
            got = [line for s in range(0, size, chunk) for line in read_range(str(path), s, min(s + chunk, size))]
            assert got == expected, (chunk, tail)


def test_a_range_holding_no_line_start_is_empty(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"a" * 100 + b"\nb\n")
    assert read_range(str(path), 10, 20) == []
    assert read_range(str(path), 0, 10) == [b"a" * 100]
    assert read_range(str(path), 100, 101) == []  # byte 100 is the newline ending line 1
    assert read_range(str(path), 101, 102) == [b"b"]  # line 2 starts at byte 101
