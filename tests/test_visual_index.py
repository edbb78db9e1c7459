"""A persisted index over images (Visualized-BGE, the tiny golden checkpoint): build from jsonl with image paths,
search by image, text and image + text (API and CLI), the recorded weights, and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from golden import GOLDEN

from bgekit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = GOLDEN / "models" / "visual-bge"
TEXT, WEIGHTS = str(ROOT / "bge-tiny"), str(ROOT / "Visualized_bge-tiny.pth")
MODEL = ["--model", TEXT, "--visual-weights", WEIGHTS]
N = 12


def make_pictures(folder, n=N):
    """n distinct 48x48 pictures: a background colour, a square of another colour, and stripes."""
    from PIL import Image

    rng = np.random.default_rng(7)
    (folder / "imgs").mkdir()
    rows = []
    for i in range(n):
        a = np.zeros((48, 48, 3), np.uint8)
        a[:] = rng.integers(0, 255, 3)
        x, y = rng.integers(0, 30, 2)
        a[y:y + 18, x:x + 18] = rng.integers(0, 255, 3)
        a[::2 + i % 4, :, i % 3] //= 2
        Image.fromarray(a).save(folder / "imgs" / f"p{i}.png")
        rows.append({"id": f"p{i}", "image": f"imgs/p{i}.png", **({"text": f"picture number {i}"} if i % 2 else {})})
    return rows


def rescaled(src, dst, size=96):
    from PIL import Image

    with Image.open(src) as im:
        im.resize((size, size), Image.BICUBIC).save(dst)
    return str(dst)


@pytest.fixture(scope="module")
def emb():
    from bgekit import VisualEmbedder

    return VisualEmbedder(TEXT, WEIGHTS)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    rows = make_pictures(folder)
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def index_dir(corpus):
    out = corpus / "index"
    assert main(["index", "build", "--corpus", str(corpus / "docs.jsonl"), "--index-dir", str(out), *MODEL]) == 0
    return str(out)


@pytest.fixture(scope="module")
def searcher(index_dir, emb):
    from bgekit.index.search import Searcher
    from bgekit.index.store import open_index

    return Searcher(open_index(index_dir), emb)


def test_the_index_records_documents_images_and_the_weights(index_dir, corpus, emb):
    from bgekit.index.store import open_index
    from bgekit.visual.index import fingerprint

    store = open_index(index_dir)
    assert store.count == N and store.outputs == ("dense",)
    info = store.model_info
    assert info.kind == "visual" and info.visual["weights"] == WEIGHTS
    assert info.visual["fingerprint"] == fingerprint(WEIGHTS) and info.visual["size"] > 0
    doc = store.documents([0, 1])
    assert doc[0][:2] == ("p0", "") and doc[0][3]["image"] == str(corpus / "imgs" / "p0.png")
    assert doc[1][1] == "picture number 1"
    # stored vectors are the model's: image alone, image + text
    expected = emb.encode(texts=[None, "picture number 1"], images=[str(corpus / "imgs" / f"p{i}.png") for i in (0, 1)])
    np.testing.assert_allclose(np.asarray(store.dense_vectors[:2]), expected, atol=1e-5)


def test_a_rescaled_copy_of_each_picture_finds_it_first(searcher, corpus, tmp_path):
    """Image-only documents (even ids) by the image alone; image + text documents (odd ids) by image + text."""
    queries = [rescaled(corpus / "imgs" / f"p{i}.png", tmp_path / f"q{i}.png") for i in range(N)]
    alone = searcher.search(images=queries[0::2], top_k=3)
    assert [r.hits[0].id for r in alone] == [f"p{i}" for i in range(0, N, 2)]
    assert alone[2].query == f"[image {queries[4]}]"
    assert all(r.hits[0].score > r.hits[1].score for r in alone)
    composed = searcher.search([f"picture number {i}" for i in range(1, N, 2)], images=queries[1::2], top_k=3)
    assert [r.hits[0].id for r in composed] == [f"p{i}" for i in range(1, N, 2)]


def test_text_and_composed_queries_score_as_the_model_does(searcher, corpus, emb):
    store = searcher.store
    docs = np.asarray(store.dense_vectors[:N])
    text = searcher.search("picture number 3", top_k=N)
    want = docs @ emb.encode(texts="picture number 3")
    got = {h.id: h.score for h in text.hits}
    np.testing.assert_allclose([got[f"p{i}"] for i in range(N)], want, atol=1e-5)
    image = str(corpus / "imgs" / "p5.png")
    composed = searcher.search("picture number 5", images=image, top_k=N)
    want = docs @ emb.encode(texts="picture number 5", images=image)
    got = {h.id: h.score for h in composed.hits}
    np.testing.assert_allclose([got[f"p{i}"] for i in range(N)], want, atol=1e-5)
    assert composed.hits[0].id == "p5"


def test_cli_search_by_image_text_and_both(index_dir, corpus, tmp_path, capsys):
    query = rescaled(corpus / "imgs" / "p6.png", tmp_path / "q6.png", 80)
    capsys.readouterr()
    assert main(["search", "--index-dir", index_dir, "--image", query, "--top-k", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["hits"][0]["id"] == "p6" and out[0]["query"] == f"[image {query}]"
    assert main(["search", "--index-dir", index_dir, "--image", query, "--query", "picture number 6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["hits"][0]["id"] == "p6" and out[0]["query"].endswith("picture number 6")
    assert main(["search", "--index-dir", index_dir, "picture number 7", "--top-k", "3"]) == 0
    table = capsys.readouterr().out
    assert "query: picture number 7" in table and "[image p" in table


def test_another_checkpoint_is_refused(index_dir, tmp_path, capsys):
    import torch

    from bgekit import VisualEmbedder
    from bgekit.index.model_info import IndexModelMismatch
    from bgekit.index.search import Searcher
    from bgekit.index.store import open_index

    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    key = "model_visual.visual.patch_embed.proj.weight"  # only the vision tower differs
    state[key] = state[key] + 0.5
    other = tmp_path / "other.pth"
    torch.save(state, other)
    model = VisualEmbedder(TEXT, str(other), vision_config=str(ROOT / "EVA02-CLIP-tiny.json"))
    store = open_index(index_dir)
    with pytest.raises(IndexModelMismatch, match="another file"):
        Searcher(store, model)
    # the image probe alone also tells the towers apart (the text probe cannot: the text weights are the same)
    from bgekit.visual.index import check, describe

    theirs = {**describe(model)["visual"], "fingerprint": store.model_info.visual["fingerprint"]}
    assert "does not reproduce the index's image probe" in check(store.model_info.visual, theirs, TEXT, "query")
    # the CLI reloads the recorded tower (no config beside other.pth needed) and refuses the weights
    code = main(["search", "--index-dir", index_dir, "--image", str(GOLDEN / "images" / "rgb_48x40.png"),
                 "--visual-weights", str(other)])
    err = capsys.readouterr().err
    assert code != 0 and "(fingerprint differs)" in err and "Traceback" not in err
    moved = tmp_path / "moved.pth"  # the same checkpoint elsewhere is accepted
    moved.write_bytes((ROOT / "Visualized_bge-tiny.pth").read_bytes())
    assert main(["search", "--index-dir", index_dir, "picture", "--visual-weights", str(moved), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["hits"]) == 3


def test_a_visual_index_is_dense_only(searcher, index_dir, corpus, emb, tmp_path, capsys):
    with pytest.raises(ValueError, match="sparse search needs sparse vectors; the index holds dense"):
        searcher.search("picture", mode="hybrid")
    from bgekit.index.search import Searcher
    from bgekit.index.store import build_index

    class TextReranker:
        def score(self, pairs):
            raise AssertionError("never called: the search refuses before encoding")

    with pytest.raises(ValueError, match="image queries cannot be reranked"):  # a reranker reranks by default
        Searcher(searcher.store, emb, TextReranker()).search(images=[str(corpus / "imgs" / "p1.png")])

    with pytest.raises(ValueError, match="dense vectors only"):
        build_index(str(tmp_path / "x"), emb, [{"id": "a", "text": "t"}], outputs=["dense", "sparse"])
    code = main(["index", "build", "--corpus", str(corpus / "docs.jsonl"), "--index-dir", str(tmp_path / "y"),
                 *MODEL, "--colbert"])
    assert code != 0 and "--colbert cannot apply with --visual-weights" in capsys.readouterr().err


def test_a_missing_image_is_named_with_its_line(corpus, tmp_path, capsys):
    rows = [{"id": "a", "image": str(corpus / "imgs" / "p0.png")}, {"id": "b", "text": "only text"},
            {"id": "c", "image": "nope.png", "text": "x"}]
    src = tmp_path / "bad.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code = main(["index", "build", "--corpus", str(src), "--index-dir", str(tmp_path / "ix"), *MODEL])
    err = capsys.readouterr().err
    assert code != 0 and f"{src}:3: image file 'nope.png' does not exist" in err
    assert "Traceback" not in err and not (tmp_path / "ix" / "CURRENT").exists()
    (tmp_path / "empty.jsonl").write_text(json.dumps({"id": "z"}) + "\n", encoding="utf-8")
    code = main(["index", "build", "--corpus", str(tmp_path / "empty.jsonl"), "--index-dir", str(tmp_path / "iz"), *MODEL])
    assert code != 0 and "'text' must be a string, got NoneType (or give an 'image' path)" in capsys.readouterr().err


def test_image_query_on_a_text_index_is_an_error(tmp_path, capsys):
    from bgekit.index.search import Searcher
    from bgekit.index.store import build_index
    from bgekit.loading import load_embedder

    model = load_embedder(str(GOLDEN / "models" / "bert-embedder"))
    store = build_index(str(tmp_path / "text"), model, [{"id": "a", "text": "a red square"}], show_progress=False)
    image = str(GOLDEN / "images" / "rgb_48x40.png")
    code = main(["search", "--index-dir", store.path, "--image", image])
    err = capsys.readouterr().err
    assert code != 0 and "--image needs an index built with a Visualized-BGE model" in err
    with pytest.raises(ValueError, match="image queries need an index built with a Visualized-BGE model"):
        Searcher(store, model).search(images=image)
    code = main(["search", "--image", image])
    assert code != 0 and "--image" in capsys.readouterr().err
    assert main(["search", "--index-dir", store.path]) != 0
    assert "give a query text" in capsys.readouterr().err
    assert main(["search", "--index-dir", store.path, "red", "--visual-weights", WEIGHTS]) != 0
    assert "--visual-weights applies to an index built with a Visualized-BGE model" in capsys.readouterr().err


def test_index_info_shows_the_weights(index_dir, capsys):
    capsys.readouterr()
    assert main(["index", "info", "--index-dir", index_dir, "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["kind"] == "visual" and model["visual"]["weights"] == WEIGHTS
    assert "image_probe" not in model["visual"] and model["visual"]["vision"] == "EVA02-CLIP-tiny"


def test_index_add_reloads_the_recorded_model(corpus, tmp_path, emb, capsys):
    import shutil

    from bgekit.index.store import open_index

    target = tmp_path / "ix"
    assert main(["index", "build", "--corpus", str(corpus / "docs.jsonl"), "--index-dir", str(target), *MODEL]) == 0
    shutil.copy(corpus / "imgs" / "p2.png", tmp_path / "new.png")
    (tmp_path / "more.jsonl").write_text(json.dumps({"id": "new", "image": "new.png", "text": "a new one"}) + "\n")
    assert main(["index", "add", "--index-dir", str(target), "--corpus", str(tmp_path / "more.jsonl")]) == 0
    store = open_index(str(target))
    row = store.rows(["new"])["new"]
    assert store.count == N + 1 and store.documents([row])[row][3]["image"] == str(tmp_path / "new.png")
    np.testing.assert_allclose(np.asarray(store.dense_vectors[row]),
                               emb.encode(texts="a new one", images=str(tmp_path / "new.png")), atol=1e-5)


def test_milvus_export_of_an_image_index_reloads_its_visual_model(index_dir, tmp_path, capsys):
    """The collection records the Visualized-BGE model; text search through Milvus equals the local index's."""
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    uri = str(tmp_path / "m.db")
    assert main(["index", "export-milvus", "--index-dir", index_dir, "--milvus-uri", uri, "--collection", "pics"]) == 0
    argv = ["search", "picture number 3", "--top-k", "4", "--json"]
    capsys.readouterr()
    assert main(argv + ["--index-dir", index_dir]) == 0
    ours = json.loads(capsys.readouterr().out)[0]["hits"]
    assert main(argv + ["--milvus-uri", uri, "--collection", "pics"]) == 0, capsys.readouterr().err
    theirs = json.loads(capsys.readouterr().out)[0]["hits"]
    assert [h["id"] for h in theirs] == [h["id"] for h in ours]
    assert [h["score"] for h in theirs] == pytest.approx([h["score"] for h in ours], abs=1e-5)
