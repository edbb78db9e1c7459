"""The search page at GET / driven in headless Chromium with Playwright, against a real server on 127.0.0.1:
the query box returns hits whose dense, sparse and reranker scores equal the library's, and a missing API key
is shown as an error. Skipped without the playwright package or a Chromium (Debian: apt-get install chromium;
or set BGEKIT_CHROMIUM to a browser executable)."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("BGEKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="no Chromium executable (apt-get install chromium)")

from golden import GOLDEN  # noqa: E402
from bgekit.cli.embed import DEFAULT_SAMPLE  # noqa: E402
from bgekit.index.documents import read_corpus  # noqa: E402
from bgekit.index.search import Searcher  # noqa: E402
from bgekit.index.store import build_index  # noqa: E402
from bgekit.m3 import M3Embedder  # noqa: E402
from bgekit.reranker import Reranker  # noqa: E402
from bgekit.serve import ServeConfig, create_app  # noqa: E402

KEY = "page-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    m3 = M3Embedder(str(GOLDEN / "models" / "m3"), devices="cpu")
    store = build_index(str(tmp_path_factory.mktemp("ix") / "ix"), m3, read_corpus(DEFAULT_SAMPLE), show_progress=False)
    searcher = Searcher(store, m3, Reranker(str(GOLDEN / "models" / "bert-reranker"), devices="cpu"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(searcher=searcher, config=ServeConfig(api_key=KEY))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}", searcher
    srv.should_exit = True
    thread.join(10)


def test_search_page_shows_hits_with_stage_scores(server):
    url, searcher = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url + "/")
            assert page.title() == "bgekit search"
            page.fill("#query", "giant panda bamboo")
            page.select_option("#mode", "hybrid")
            page.fill("#top-k", "3")
            page.check("#rerank")
            page.click("#go")
            page.wait_for_selector("#status.error")
            assert "API key" in page.text_content("#status")
            page.fill("#api-key", KEY)
            page.click("#go")
            page.wait_for_selector("tr.hit")
            rows = page.query_selector_all("tr.hit")
            expected = searcher.search("giant panda bamboo", top_k=3, mode="hybrid", rerank=True).hits
            assert len(rows) == 3
            for row, hit in zip(rows, expected):
                cells = [c.text_content() for c in row.query_selector_all("td")]
                assert cells[1] == hit.id and cells[2] == hit.text
                assert cells[3:6] == [f"{hit.scores[s]:.4f}" for s in ("dense", "sparse", "rerank")]
            assert "3 hits" in page.text_content("#status")
        finally:
            browser.close()
