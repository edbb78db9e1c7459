"""Visualized-BGE's API: bad input (one line per case, as tests/test_bad_input_api.py), where the reference crashes,
the two import paths, configs, dtypes, batching and saving. Vectors are checked against the golden outputs."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from golden import GOLDEN, assert_close, case_by_id, load_output

from bgekit.errors import (
    InputError,
    InputFileError,
    ModelError,
    ModelFileError,
    ModelMismatch,
    UsageError,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = GOLDEN / "models" / "visual-bge"
TEXT, WEIGHTS = str(ROOT / "bge-tiny"), str(ROOT / "Visualized_bge-tiny.pth")
IMG = str(GOLDEN / "images" / "rgb_48x40.png")


@pytest.fixture(scope="module")
def emb():
    from bgekit import VisualEmbedder

    return VisualEmbedder(TEXT, WEIGHTS, batch_size=4)


@pytest.fixture(scope="module")
def ref():
    from bgekit import Visualized_BGE

    return Visualized_BGE(model_name_bge=TEXT, model_weight=WEIGHTS).eval()


CASES = [
    ("emb.encode()", TypeError, "encode needs texts, images or both"),
    ("emb.encode(texts=['a', 3])", TypeError, "texts[1] must be a string or None, got int"),
    ("emb.encode(texts='a', images=[IMG, IMG])", InputError, "texts has 1 items and images 2"),
    ("emb.encode(texts=[None], images=[None])", InputError, "row 0 has neither a text nor an image"),
    ("emb.encode(images=[IMG, '/no/such.png'])", InputFileError, "images[1]: image file '/no/such.png' does not exist"),
    ("emb.encode(images=[str(GOLDEN)])", InputFileError, "(it is a folder)"),
    ("emb.encode(images=[str(GOLDEN / 'manifest.json')])", InputError, "images[0]: "),
    ("emb.encode(images=[np.zeros((8, 8, 3), dtype=np.float32)])", InputError, "images[0]: an image array must be uint8"),
    ("emb.encode(images=[np.zeros((8, 8, 2), dtype=np.uint8)])", InputError, "must be (H, W), (H, W, 1), (H, W, 3)"),
    ("emb.encode(images=np.zeros((2, 8, 8, 3), dtype=np.uint8))", TypeError, "a 4-D array is not one image"),
    ("emb.encode(images=[3])", InputError, "images[0] must be an image path, a PIL image or a numpy array, got int"),
    ("emb.encode(texts=['a'], max_length=513)", ModelMismatch, "position limit of 512"),
    ("emb.encode(texts=['a'], batch_size=0)", ValueError, "batch_size must be a positive integer, got 0"),
    ("VisualEmbedder(TEXT, WEIGHTS, pooling='max')", UsageError, "unknown pooling 'max' for Visualized-BGE; valid: cls, mean"),
    ("VisualEmbedder(TEXT, WEIGHTS, colour='red')", TypeError, "colour"),
    ("VisualEmbedder(TEXT, str(GOLDEN / 'README.md'))", ModelError, "no vision tower for text model"),
    ("VisualEmbedder(TEXT, WEIGHTS, vision_config='EVA02-CLIP-tiny')", UsageError, "unknown vision_config 'EVA02-CLIP-tiny'; valid names: EVA02-CLIP-B-16, EVA02-CLIP-L-14"),
    ("VisualEmbedder(TEXT, WEIGHTS, vision_config='EVA02-CLIP-B-16')", ModelMismatch, "has width 768, but the text model's hidden size is 32"),
    ("VisualEmbedder(TEXT, str(ROOT / 'nothing.pth'))", ModelFileError, "nothing.pth' do not exist"),
    ("Visualized_BGE(model_name_bge=TEXT, model_weight='/no/such.pth')", ModelFileError, "'/no/such.pth' do not exist"),
    ("VisualEmbedder(TEXT, str(ROOT / 'EVA02-CLIP-tiny.json'))", ModelError, "cannot read the Visualized-BGE weights"),
    ("Visualized_BGE(model_name_bge=TEXT)", TypeError, "model_weight is required"),
    ("Visualized_BGE(model_name_bge=TEXT, model_weight=WEIGHTS, sentence_pooling_method='max')", UsageError, "valid: cls, mean"),
    ("Visualized_BGE(model_name_bge=TEXT, model_weight=WEIGHTS, negatives_cross_device=True)", UsageError, "training option"),
    ("ref.encode(image=IMG, text=['a', 'b'])", InputError, "pairs one image with one text, got 2 texts"),
    ("ref.encode(image='/no/such.png')", InputFileError, "image: image file '/no/such.png' does not exist"),
]


@pytest.mark.parametrize("call,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(call, error, fragment, emb, ref):
    from bgekit import VisualEmbedder, Visualized_BGE

    namespace = {"emb": emb, "ref": ref, "np": np, "IMG": IMG, "TEXT": TEXT, "WEIGHTS": WEIGHTS, "ROOT": ROOT,
                 "GOLDEN": GOLDEN, "VisualEmbedder": VisualEmbedder, "Visualized_BGE": Visualized_BGE}
    with pytest.raises(error) as info:
        eval(call, namespace)
    assert fragment in str(info.value)


def test_wrong_config_for_checkpoint_is_caught_by_its_rope_tables(tmp_path):
    import json
    import shutil

    from bgekit import VisualEmbedder

    cfg = json.loads((ROOT / "EVA02-CLIP-tiny.json").read_text())
    cfg["vision_cfg"]["pt_hw_seq_len"] = 8
    (tmp_path / "EVA02-CLIP-tiny.json").write_text(json.dumps(cfg))
    shutil.copy(WEIGHTS, tmp_path / "w.pth")
    with pytest.raises(ModelMismatch, match="does not match the RoPE of vision config EVA02-CLIP-tiny"):
        VisualEmbedder(TEXT, str(tmp_path / "w.pth"))


def test_published_names_pick_the_published_towers():
    from bgekit.visual.config import NAMED_CONFIGS, resolve

    b16 = resolve("BAAI/bge-base-en-v1.5", "/anywhere/Visualized_base_en_v1.5.pth")
    l14 = resolve("BAAI/bge-m3", "/anywhere/Visualized_m3.pth")
    assert (b16.name, b16.width, b16.layers, b16.num_patches, b16.mlp_hidden) == ("EVA02-CLIP-B-16", 768, 12, 196, 2048)
    assert (l14.name, l14.width, l14.layers, l14.num_patches, l14.heads) == ("EVA02-CLIP-L-14", 1024, 24, 256, 16)
    assert resolve("x", WEIGHTS).name == "EVA02-CLIP-tiny" and set(NAMED_CONFIGS) == {"EVA02-CLIP-B-16", "EVA02-CLIP-L-14"}


def _long(case_id: str, extra_words: int = 40) -> tuple[str, dict]:
    case = case_by_id(case_id)
    return case["inputs"]["text"] + " tokens" * extra_words, case


def test_over_long_texts_are_truncated_to_the_limit_where_the_reference_crashes(emb, ref, caplog):
    """513+ tokens alone and 497+ next to an image crash the reference; bgekit cuts at 512 / 496 tokens,
    which gives exactly the reference's vectors for the 512- and 496-token cases."""
    text, case = _long("visual-bge/encode-text-long-512")
    mm_text, mm_case = _long("visual-bge/encode-mm-long-496")
    out = emb.encode(texts=[text, mm_text], images=[None, str(GOLDEN / mm_case["inputs"]["image"])])
    assert_close(out[:1], load_output(case, "embeddings"), case["tolerance"], "native text 512")
    assert_close(out[1:], load_output(mm_case, "embeddings"), mm_case["tolerance"], "native composed 496")
    with caplog.at_level(logging.WARNING, logger="bgekit.visual.compat"):
        got = ref.encode(text=text)
    assert "is truncated to 512" in caplog.text
    assert_close(got, load_output(case, "embeddings"), case["tolerance"], "compat text 512")
    got = ref.encode(image=str(GOLDEN / mm_case["inputs"]["image"]), text=mm_text)
    assert_close(got, load_output(mm_case, "embeddings"), mm_case["tolerance"], "compat composed 496")


def test_single_inputs_give_vectors_and_tensors_on_request(emb):
    import torch

    one = emb.encode(images=IMG, texts="at night")
    assert one.shape == (32,) and emb.encode(images=IMG).shape == (32,) and emb.encode(texts="a").shape == (32,)
    assert np.allclose(np.linalg.norm(one), 1.0, atol=1e-5)
    t = emb.encode(texts=["a", "b"], convert_to_numpy=False)
    assert isinstance(t, torch.Tensor) and t.shape == (2, 32)
    assert emb.encode(texts=[]).shape == (0, 32)


def test_image_only_equals_composed_with_empty_text(emb):
    a = emb.encode(images=[IMG, IMG], texts=[None, ""])
    assert np.array_equal(a[0], a[1])


def test_batching_does_not_change_the_vectors(emb):
    texts = ["short", "a much longer caption about a bridge at night", None, "x"]
    images = [IMG, None, str(GOLDEN / "images" / "gray_40x72.png"), IMG]
    batched = emb.encode(texts=texts, images=images, batch_size=4)
    one_by_one = np.stack([emb.encode(texts=[t], images=[i], batch_size=1)[0] for t, i in zip(texts, images)])
    assert np.abs(batched - one_by_one).max() < 1e-5


def test_progress_bar_is_the_shared_one(emb, capsys):
    emb.encode(images=[IMG] * 3, show_progress=True)
    assert "Encoding images" in capsys.readouterr().err


def test_bf16_runs_in_bf16_and_stays_close_to_fp32(emb):
    import torch

    from bgekit import VisualEmbedder

    bf = VisualEmbedder(TEXT, WEIGHTS, dtype="bf16")
    assert bf.model.visual_proj.weight.dtype == torch.bfloat16
    texts, images = ["a bridge at night", None, "red"], [None, IMG, IMG]
    lo, hi = bf.encode(texts=texts, images=images), emb.encode(texts=texts, images=images)
    assert lo.dtype == np.float32
    cosine = (lo * hi).sum(axis=1)
    assert cosine.min() > 0.99, cosine


def test_palette_images_resize_with_nearest_as_pil_does():
    """Mode P / 1 images: PIL resizes them with NEAREST whatever filter is asked (golden README, not a case)."""
    from PIL import Image

    from bgekit.visual.images import CLIP_MEAN, CLIP_STD, preprocess

    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    pal = rgb.quantize(16)
    manual = pal.convert("RGB").resize((76, 64), Image.NEAREST).crop((6, 0, 70, 64))
    x = (np.asarray(manual).astype(np.float32).transpose(2, 0, 1) / np.float32(255) - CLIP_MEAN[:, None, None]) \
        / CLIP_STD[:, None, None]
    assert np.array_equal(preprocess(pal, 64), x)
    assert not np.array_equal(preprocess(pal, 64), preprocess(pal.convert("RGB"), 64))  # bicubic would differ


def test_both_import_paths_and_the_reference_layout(ref, tmp_path):
    import torch

    import bgekit
    from bgekit.visual_bge.modeling import Visualized_BGE

    assert bgekit.Visualized_BGE is Visualized_BGE and "VisualEmbedder" in dir(bgekit)
    assert ref.device.type in ("cpu", "cuda") and ref.dtype == torch.float32 and ref.normlized is True
    ref.save(str(tmp_path))
    original = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    saved = torch.load(tmp_path / "Visualized_BGE.pth", map_location="cpu", weights_only=True)
    assert set(saved) == set(original)
    assert all(torch.equal(saved[k], original[k]) for k in original)


def test_compat_accepts_pil_images_and_file_objects(ref):
    from PIL import Image

    case = case_by_id("visual-bge/encode-mm-rgba_70x50")
    path = str(GOLDEN / case["inputs"]["image"])
    with open(path, "rb") as f:
        from_file = ref.encode(image=f, text=case["inputs"]["text"])
    from_pil = ref.encode(image=Image.open(path), text=case["inputs"]["text"])
    assert_close(from_file, load_output(case, "embeddings"), case["tolerance"], "file object")
    assert_close(from_pil, load_output(case, "embeddings"), case["tolerance"], "PIL image")
    assert ref.encode() is None


def test_eval_forward_scores_like_the_reference_methods(ref):
    import torch

    pixels = ref.preprocess_val(__import__("PIL.Image", fromlist=["open"]).open(IMG)).unsqueeze(0)
    texts = ref.tokenizer(["at night"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = ref(mm_it_query=(pixels, texts), image_candidate=torch.cat([pixels, pixels]), task_type="edit_image")
        q = ref.encode_mm(pixels, texts)
    assert out["scores"].shape == (1, 2) and torch.allclose(out["q_reps"], q)
    with pytest.raises(UsageError, match="valid: edit_image, t2it"):
        ref(task_type="nope")


def _generated_images(folder, n: int = 12) -> tuple[list[str], list[str]]:
    """``n`` distinct pictures (sinusoid patterns over a colour) and, for each, a query made from it:
    upscaled 1.3x with another filter and saved as JPEG (other pixels, same picture)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    docs, queries = [], []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(60, 140, 2))
        yy, xx = np.mgrid[0:h, 0:w]
        f, colour = rng.uniform(0.02, 0.3, 2), rng.uniform(0, 255, 3)
        pattern = np.stack([127 + 127 * np.sin(xx * f[0] + k) * np.cos(yy * f[1] + 2 * k) for k in range(3)], -1)
        image = Image.fromarray(np.clip(pattern * 0.5 + colour * 0.5, 0, 255).astype(np.uint8))
        docs.append(str(folder / f"doc{i}.png"))
        image.save(docs[-1])
        queries.append(str(folder / f"query{i}.jpg"))
        image.resize((int(w * 1.3), int(h * 1.3)), Image.BILINEAR).save(queries[-1], quality=85)
    return docs, queries


def test_image_retrieval_end_to_end_on_generated_pictures(emb, tmp_path):
    """Real pixels through the whole path: a re-scaled JPEG of a picture finds that picture first among 12.
    (Text and composed queries run through the same space; with random weights their ranking means nothing,
    so only their shape and norm are checked here.)"""
    docs, queries = _generated_images(tmp_path)
    doc_vecs = emb.encode(images=docs)  # (12, 32)
    by_image = emb.encode(images=queries)
    assert np.array_equal(np.argmax(by_image @ doc_vecs.T, axis=1), np.arange(len(docs)))
    others = emb.encode(texts=["a striped picture", "the same picture, brighter"], images=[None, queries[0]])
    scores = others @ doc_vecs.T
    assert scores.shape == (2, 12) and np.all(np.abs(scores) <= 1 + 1e-5)


def test_from_pretrained_reads_config_and_tokenizer_from_a_local_folder():
    """The reference's from_pretrained: the text config and tokenizer come from that folder (no hub lookup for
    model_name_bge, which here names no folder; the tower comes from the JSON beside the weights)."""
    import torch

    from bgekit import Visualized_BGE

    model = Visualized_BGE(model_name_bge="my-visual-bge", model_weight=WEIGHTS, from_pretrained=TEXT).eval()
    case = case_by_id("visual-bge/encode-text-single")
    with torch.no_grad():
        got = model.encode(text=case["inputs"]["text"])
    assert_close(got, load_output(case, "embeddings"), case["tolerance"], "from_pretrained")
