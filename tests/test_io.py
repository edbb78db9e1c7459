import os
import stat

import numpy as np
import pytest

from bgekit.io import atomic_open, atomic_save_npy, atomic_write_text, iter_jsonl, iter_lines


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    def set_umask(value):
        os.umask(value)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_text(str(tmp_path / "a.txt"), "x")
    atomic_save_npy(str(tmp_path / "a.npy"), np.zeros(2))
    assert _mode(tmp_path / "a.txt") == expected and _mode(tmp_path / "a.npy") == expected


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    atomic_write_text(str(path), "new")
    assert path.read_text() == "new" and _mode(path) == 0o640
    os.chmod(path, 0o444 | 0o200)
    with atomic_open(str(path)) as f:
        f.write("newer")
    assert _mode(path) == 0o644


def test_an_index_is_readable_like_its_data(tmp_path, umask):
    """CURRENT used to be 0600 while the data was 0644: a service account could not open a colleague's index."""
    from bgekit import Embedder
    from bgekit.index.store import build_index
    from golden import GOLDEN

    umask(0o022)
    ix = tmp_path / "ix"
    build_index(str(ix), Embedder(str(GOLDEN / "models" / "bert-embedder"), devices="cpu"),
                [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}], show_progress=False)
    current = (ix / "CURRENT").read_text().strip()
    modes = {p.name: _mode(p) for p in (ix / current).iterdir()}
    assert _mode(ix / "CURRENT") == 0o644
    assert set(modes.values()) == {0o644}, modes


def test_bom_and_line_endings(tmp_path):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\n')
    assert [v["text"] for _, v in iter_jsonl(str(p))] == ["a", "b"]
    t = tmp_path / "bom.txt"
    t.write_bytes(b"\xef\xbb\xbfone\r\ntwo\nthree")
    assert list(iter_lines(str(t))) == [(1, "one"), (2, "two"), (3, "three")]


def test_invalid_utf8_names_file_line_and_column(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"ok\nok\nbad \xff here\n")
    with pytest.raises(ValueError, match=r"x.txt:3: not valid UTF-8 \(byte 0xff at column 5\)"):
        list(iter_lines(str(p)))
