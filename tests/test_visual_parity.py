"""Parity with FlagEmbedding's research Visualized_BGE on every golden case (../shared/golden/README-visual-bge.md).

Each case builds ``Visualized_BGE`` as the golden README says (keyword arguments, paths under the golden root),
calls the case's method on its inputs and compares with the stored output at the case's own tolerance. The
native VisualEmbedder is checked against the same stored outputs.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from golden import GOLDEN, assert_close, case_by_id, cases, load_output

pytestmark = pytest.mark.usefixtures("one_thread")

VISUAL_CASES = cases({"Visualized_BGE"})
TOKENIZE_CASE = "visual-bge/tokenize"


def test_every_visual_case_is_found():
    """The manifest's 25 model cases and the tokenize case (26 in all, README-visual-bge.md) are all here."""
    assert len(VISUAL_CASES) == 25
    assert case_by_id(TOKENIZE_CASE)["model"] == "models/visual-bge/bge-tiny"


@functools.cache
def _model(kwargs_json: str):
    from bgekit.visual_bge.modeling import Visualized_BGE

    kwargs = {k: (str(GOLDEN / v) if k in ("model_name_bge", "model_weight") else v)
              for k, v in json.loads(kwargs_json).items()}
    return Visualized_BGE(**kwargs).eval()


def _inputs(case: dict, model) -> list:
    """The case's positional inputs, as the golden README's calling conventions say."""
    import torch
    from PIL import Image

    values = []
    for name, value in case["inputs"].items():
        if case["method"] == "preprocess_val":
            value = Image.open(GOLDEN / value)
        elif case["method"] == "encode" and name == "image" and value is not None:
            value = str(GOLDEN / value)
        elif name == "images":  # references to preprocess cases: torch.stack of their pixel tensors
            value = torch.stack([torch.from_numpy(load_output(case_by_id(ref["from_case"]), ref["output"]))
                                 for ref in value])
        elif name == "texts":
            value = model.tokenizer(value, return_tensors="pt", padding=True)
        values.append(value)
    return values


@pytest.mark.parametrize("case", VISUAL_CASES, ids=[c["id"] for c in VISUAL_CASES])
def test_reference_case(case):
    import torch

    model = _model(json.dumps(case["constructor_kwargs"], sort_keys=True))
    with torch.no_grad():
        actual = getattr(model, case["method"])(*_inputs(case, model), **case["method_kwargs"])
    (key,) = case["outputs"]
    assert isinstance(actual, torch.Tensor) and actual.dtype == torch.float32
    assert_close(actual, load_output(case, key), case["tolerance"], f"{case['id']}:{key}")


def test_tokenizer_ids_match_reference():
    from bgekit.backends import load_tokenizer

    case = case_by_id(TOKENIZE_CASE)
    tok = load_tokenizer(str(GOLDEN / case["constructor_kwargs"]["pretrained_model_name_or_path"]))
    assert tok(case["inputs"]["text"])["input_ids"] == load_output(case, "input_ids")


# ---------------------------------------------------------------- the native API on the same outputs
@pytest.fixture(scope="module")
def embedder():
    from bgekit import VisualEmbedder

    root = GOLDEN / "models" / "visual-bge"
    return VisualEmbedder(str(root / "bge-tiny"), str(root / "Visualized_bge-tiny.pth"), batch_size=5)


def _encode_cases() -> list[dict]:
    return [c for c in VISUAL_CASES if c["method"] == "encode" and c["constructor_kwargs"].keys() == {"model_name_bge", "model_weight"}]


def test_native_embedder_matches_every_default_encode_case_in_one_batch(embedder):
    """All default-settings encode cases (texts, images, composed) as rows of one mixed, length-sorted call."""
    texts, images, expected, tols = [], [], [], []
    for case in _encode_cases():
        image, text = case["inputs"]["image"], case["inputs"].get("text")
        rows = text if isinstance(text, list) else [text]
        texts += rows
        images += [None if image is None else str(GOLDEN / image)] * len(rows)
        expected.append(load_output(case, "embeddings"))
        tols.append(case["tolerance"])
    out = embedder.encode(texts=texts, images=images)
    assert out.shape == (len(texts), 32)
    start = 0
    for case, exp, tol in zip(_encode_cases(), expected, tols):
        assert_close(out[start:start + len(exp)], exp, tol, f"native {case['id']}")
        start += len(exp)
    assert start == len(texts) and len(expected) == 14  # 4 text, 4 image, 6 composed cases


@pytest.mark.parametrize("case_id,kwargs", [("visual-bge/encode-text-batch-nonorm", {"normalize": False}),
                                            ("visual-bge/encode-text-batch-mean", {"pooling": "mean"}),
                                            ("visual-bge/encode-mm-nonorm", {"normalize": False}),
                                            ("visual-bge/encode-mm-mean", {"pooling": "mean"})])
def test_native_embedder_other_settings(case_id, kwargs):
    from bgekit import VisualEmbedder

    case = case_by_id(case_id)
    root = GOLDEN / "models" / "visual-bge"
    emb = VisualEmbedder(str(root / "bge-tiny"), str(root / "Visualized_bge-tiny.pth"), **kwargs)
    image, text = case["inputs"]["image"], case["inputs"]["text"]
    if image is None:
        out = emb.encode(texts=text)
    else:
        out = emb.encode(texts=[text], images=[str(GOLDEN / image)])
    assert_close(out, load_output(case, "embeddings"), case["tolerance"], f"native {case_id}")


def test_native_pixels_from_pil_and_arrays_match_paths(embedder):
    """A PIL image and its uint8 array give the same vectors as the file (RGBA and greyscale included)."""
    from PIL import Image

    paths = [str(GOLDEN / "images" / f"{n}.png") for n in ("rgba_70x50", "gray_40x72")]
    pil = [Image.open(p) for p in paths]
    by_path = embedder.encode(images=paths)
    assert np.array_equal(embedder.encode(images=pil), by_path)
    assert np.array_equal(embedder.encode(images=[np.asarray(im) for im in pil]), by_path)
    expected = load_output(case_by_id("visual-bge/encode-image-rgba_70x50"), "embeddings")
    assert_close(by_path[:1], expected, case_by_id("visual-bge/encode-image-rgba_70x50")["tolerance"], "rgba")
