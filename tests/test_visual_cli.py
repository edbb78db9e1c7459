"""`bgekit encode --visual-weights`: a folder of images, jsonl with image paths and optional text, and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from golden import GOLDEN

from bgekit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = GOLDEN / "models" / "visual-bge"
MODEL = ["--model", str(ROOT / "bge-tiny"), "--visual-weights", str(ROOT / "Visualized_bge-tiny.pth")]
IMAGES = GOLDEN / "images"


@pytest.fixture(scope="module")
def emb():
    from bgekit import VisualEmbedder

    return VisualEmbedder(str(ROOT / "bge-tiny"), str(ROOT / "Visualized_bge-tiny.pth"))


def test_encode_a_folder_of_images(tmp_path, emb, capsys):
    out = tmp_path / "images.npy"
    assert main(["encode", str(IMAGES), "-o", str(out), *MODEL, "--dtype", "fp32"]) == 0
    names = sorted(p.name for p in IMAGES.iterdir())  # rows in file-name order
    expected = emb.encode(images=[str(IMAGES / n) for n in names])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    assert "encoded 4 items (4 with an image)" in capsys.readouterr().err


def test_encode_jsonl_with_images_texts_and_both(tmp_path, emb):
    rows = [{"image": "rgb_64x64.png", "text": "at night"}, {"text": "a bridge"}, {"image": str(IMAGES / "gray_40x72.png")}]
    (tmp_path / "rgb_64x64.png").write_bytes((IMAGES / "rgb_64x64.png").read_bytes())  # relative to the jsonl
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path / "docs.npy"
    assert main(["encode", str(src), "-o", str(out), *MODEL]) == 0
    expected = emb.encode(texts=["at night", "a bridge", None],
                          images=[str(IMAGES / "rgb_64x64.png"), None, str(IMAGES / "gray_40x72.png")])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


@pytest.mark.parametrize("extra,fragment", [
    (["--sparse"], "--sparse cannot apply with --visual-weights"),
    (["--kind", "query"], "--kind cannot apply with --visual-weights"),
    (["--device", "cpu", "--device", "cpu"], "encodes on one device"),
])
def test_options_that_cannot_apply(tmp_path, capsys, extra, fragment):
    assert main(["encode", str(IMAGES), "-o", str(tmp_path / "x.npy"), *MODEL, *extra]) == 2
    assert fragment in capsys.readouterr().err


def test_bad_inputs_are_named_before_the_model_loads(tmp_path, capsys):
    # a folder without --visual-weights: an input error (exit 3) like any folder given as a text file, naming the option
    assert main(["encode", str(IMAGES), "-o", str(tmp_path / "x.npy")]) == 3
    assert "is a folder; expected a file" in (err := capsys.readouterr().err) and "--visual-weights" in err
    assert main(["encode", str(IMAGES), "-o", str(tmp_path / "x.npy"), "--visual-weights", MODEL[3]]) == 2
    assert "needs --model" in capsys.readouterr().err
    src = tmp_path / "bad.jsonl"
    src.write_text('{"image": "missing.png"}\n', encoding="utf-8")
    assert main(["encode", str(src), "-o", str(tmp_path / "x.npy"), *MODEL]) == 3
    assert "item 1: image file" in capsys.readouterr().err
    src.write_text('{"image": "a.png"}\n{"title": "no image, no text"}\n', encoding="utf-8")
    assert main(["encode", str(src), "-o", str(tmp_path / "x.npy"), *MODEL]) == 3
    assert "bad.jsonl:2: expected an object with an image path" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()
