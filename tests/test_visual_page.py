"""The search page over a Visualized-BGE index, in headless Chromium (as tests/test_serve_page.py): thumbnails of
image hits (fetched with the API key), an uploaded image as the query, alone or with text; and the image route
serves only documents' images. Skipped without playwright or a Chromium."""
from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("BGEKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(not CHROMIUM, reason="no Chromium executable (apt-get install chromium)"),
              pytest.mark.usefixtures("one_thread")]

from test_serve_page import _serve  # noqa: E402
from test_visual_index import TEXT, WEIGHTS, make_pictures, rescaled  # noqa: E402

from bgekit.serve import ServeConfig  # noqa: E402

KEY = "visual-page-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from bgekit import VisualEmbedder
    from bgekit.index.search import Searcher
    from bgekit.index.store import build_index

    folder = tmp_path_factory.mktemp("pictures")
    rows = make_pictures(folder)
    emb = VisualEmbedder(TEXT, WEIGHTS)
    cwd = os.getcwd()
    os.chdir(folder)  # image paths of documents given in Python are relative to the working directory
    try:
        store = build_index(str(folder / "index"), emb, rows, show_progress=False)
    finally:
        os.chdir(cwd)
    searcher = Searcher(store, emb)
    srv, thread, url = _serve(searcher, ServeConfig(api_key=KEY))
    yield url, searcher, folder
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server):
    url = server[0]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        pg = b.new_page()
        pg.goto(url + "/")
        pg.fill("#api-key", KEY)
        yield pg
        b.close()


def _run(page, query=""):
    page.evaluate("document.querySelector('#status').textContent = ''")
    page.fill("#query", query)
    page.click("#go")
    page.wait_for_function("document.querySelector('#status').textContent.match(/hits in|error/)")
    assert "error" not in page.text_content("#status"), page.text_content("#status")
    page.wait_for_function("[...document.querySelectorAll('.thumb')].every(i => i.complete && i.naturalWidth > 0)")
    return page.eval_on_selector_all(".hit", "els => els.map(li => li.dataset.id)")


def test_text_search_shows_thumbnails_of_the_image_hits(server, page):
    _, searcher, _ = server
    assert page.is_visible("#image")
    ids = _run(page, "picture number 3")
    assert ids == [h.id for h in searcher.search("picture number 3", top_k=10).hits]
    sizes = page.eval_on_selector_all(".thumb", "els => els.map(i => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) == len(ids) and all(s == [48, 48] for s in sizes)  # the documents' own 48x48 files


def test_an_uploaded_image_is_the_query_alone_or_with_text(server, page, tmp_path):
    _, searcher, folder = server
    query = rescaled(folder / "imgs" / "p4.png", tmp_path / "q4.png", 90)
    page.set_input_files("#image", query)
    assert page.is_visible("#image-preview") and page.is_visible("#clear-image")
    ids = _run(page, "")
    assert ids[0] == "p4" and ids == [h.id for h in searcher.search(images=query, top_k=10).hits]
    query = rescaled(folder / "imgs" / "p7.png", tmp_path / "q7.png", 90)
    page.set_input_files("#image", query)
    ids = _run(page, "picture number 7")
    assert ids[0] == "p7" and ids == [h.id for h in searcher.search("picture number 7", images=query, top_k=10).hits]
    page.click("#clear-image")
    assert not page.is_visible("#image-preview")
    assert _run(page, "picture number 2") == [h.id for h in searcher.search("picture number 2", top_k=10).hits]


def _get(url, data=None):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_image_route_serves_documents_images_only(server):
    url, _, folder = server
    status, body = _get(f"{url}/document-image?id=p0")
    assert status == 200 and body == (folder / "imgs" / "p0.png").read_bytes()
    for bad in ("nope", "../imgs/p0.png", str(folder / "imgs" / "p0.png"), "p0/../p1"):
        status, body = _get(f"{url}/document-image?id={urllib.request.quote(bad, safe='')}")
        assert status == 404 and "no document" in json.loads(body)["error"]["message"]
    status, body = _get(f"{url}/search/image", {"image": "%%%", "top_k": 3})
    assert status == 400 and "not valid base64" in body.decode()
    status, body = _get(f"{url}/search/image", {"image": base64.b64encode(b"not a picture").decode()})
    assert status == 400 and "not a readable image" in body.decode()
    raw = base64.b64encode((folder / "imgs" / "p8.png").read_bytes()).decode()
    status, body = _get(f"{url}/search/image", {"image": raw, "top_k": 2})
    assert status == 200 and json.loads(body)["hits"][0]["id"] == "p8"
