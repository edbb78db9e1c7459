"""The search page at GET / driven in headless Chromium with Playwright, against real servers on 127.0.0.1.

Two servers: a hybrid (BGE-M3 dense + sparse) index with a reranker and an API key, and a dense-only index with
neither. Checked: hits equal the library's (ids, titles, scores of exactly the stages that ran); rerank happens
exactly when the box is checked and the box starts as the server's default; modes the index cannot serve are not
offered; query words are highlighted in a snippet that expands to the full text; metadata is shown; document
text is never HTML; the key box appears only when the server wants a key; keyboard use; a phone-width viewport
has no sideways scrolling. Skipped without the playwright package or a Chromium (Debian: apt-get install
chromium; or set BGEKIT_CHROMIUM to a browser executable)."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("BGEKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.skipif(not CHROMIUM, reason="no Chromium executable (apt-get install chromium)"),
              pytest.mark.usefixtures("one_thread")]

from golden import GOLDEN  # noqa: E402
from bgekit.cli.embed import DEFAULT_SAMPLE  # noqa: E402
from bgekit.index.search import Searcher  # noqa: E402
from bgekit.index.store import build_index  # noqa: E402
from bgekit.m3 import M3Embedder  # noqa: E402
from bgekit.reranker import Reranker  # noqa: E402
from bgekit.serve import ServeConfig, create_app  # noqa: E402

KEY = "page-test-key"
LONG = ("Tortoises live long lives. " + "Their slow metabolism and thick shells protect them from predators. " * 12
        + "Giant tortoises of the Galapagos often pass one hundred years.")
EXTRA = [
    {"id": "t1", "title": "Why tortoises live so long", "text": LONG, "metadata": {"lang": "en", "year": 2021}},
    {"id": "x1", "title": "<b>bold</b> title", "text": "<img src=x onerror=\"window.hacked=1\"> tortoises & html",
     "metadata": {"lang": "en"}},
]


def _serve(searcher, config):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(searcher=searcher, config=config), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    return srv, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    m3 = M3Embedder(str(GOLDEN / "models" / "m3"), devices="cpu")
    corpus = _sample() + EXTRA
    root = tmp_path_factory.mktemp("ix")
    hybrid = Searcher(build_index(str(root / "hybrid"), m3, corpus, show_progress=False), m3,
                      Reranker(str(GOLDEN / "models" / "bert-reranker"), devices="cpu"))
    dense = Searcher(build_index(str(root / "dense"), m3, corpus, outputs=("dense",), show_progress=False), m3)
    started = [_serve(hybrid, ServeConfig(api_key=KEY)), _serve(dense, ServeConfig())]
    yield {"hybrid": (started[0][2], hybrid), "dense": (started[1][2], dense)}
    for srv, thread, _ in started:
        srv.should_exit = True
        thread.join(10)


def _sample():
    import json

    with open(DEFAULT_SAMPLE, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, url, **kw):
    page = browser.new_page(**kw)
    page.goto(url + "/")
    page.wait_for_function("document.querySelector('#mode').options.length > 0")
    page.wait_for_timeout(150)   # the /health, /info and /docs probes
    return page


def _hits(page):
    return page.eval_on_selector_all(".hit", """els => els.map(li => ({
        id: li.dataset.id, title: li.querySelector('h2').textContent,
        scores: Object.fromEntries([...li.querySelectorAll('.scores span[class^=score-]')].map(
            s => [s.className.slice(6), s.textContent.split(' ')[1]])),
        score: li.querySelector('.scores b').textContent}))""")


def _search(page, query):
    page.fill("#query", query)
    page.press("#query", "Enter")
    page.wait_for_function("document.querySelector('#status').textContent.match(/hits in|error/)")
    return _hits(page)


def test_key_box_rerank_exactly_when_asked_and_scores_of_the_stages_that_ran(servers, browser):
    url, searcher = servers["hybrid"]
    page = _open(browser, url)
    assert page.title() == "bgekit search"
    assert page.is_visible("#key-row") and "--api-key" in page.text_content("#key-row")
    assert page.is_checked("#rerank")                      # the server's default: a loaded reranker reranks
    page.select_option("#mode", "hybrid")
    page.fill("#top-k", "3")
    _search(page, "giant panda bamboo")
    assert "error" in page.text_content("#status.error")            # no key yet: the server's 401 is shown
    page.fill("#api-key", KEY)
    for rerank in (True, False):
        page.set_checked("#rerank", rerank)
        shown = _search(page, "giant panda bamboo")
        expected = searcher.search("giant panda bamboo", top_k=3, mode="hybrid", rerank=rerank)
        stages = list(expected.stages)
        assert [h["id"] for h in shown] == [h.id for h in expected.hits]
        for got, hit in zip(shown, expected.hits):
            assert got["title"] == f"{hit.rank}.{hit.title or hit.id}"
            assert got["scores"] == {s: f"{hit.scores[s]:.4f}" for s in stages}
            assert got["score"] == f"{hit.score:.4f}"
        assert ("rerank" in stages) is rerank
        assert " → ".join(stages) in page.text_content("#status")
    page.close()


def test_dense_only_index_offers_only_dense_and_no_rerank_or_key(servers, browser):
    url, _ = servers["dense"]
    page = _open(browser, url)
    assert not page.is_visible("#key-row") and not page.is_visible("#rerank-label")
    options = page.eval_on_selector_all("#mode option", "os => os.map(o => o.value)")
    if options != ["dense"]:        # a server whose /health does not list the index's outputs: learn from the refusal
        page.select_option("#mode", "sparse")
        _search(page, "tortoises")
        assert "sparse" in page.text_content("#status.error")
        options = page.eval_on_selector_all("#mode option", "os => os.map(o => o.value)")
    assert options == ["dense"]
    shown = _search(page, "tortoises")
    assert shown and all(set(h["scores"]) == {"dense"} for h in shown)
    page.close()


def test_highlighted_snippet_expands_metadata_and_no_html_from_documents(servers, browser):
    url, _ = servers["dense"]
    page = _open(browser, url)
    page.fill("#top-k", "20")
    _search(page, "why do tortoises live long")
    item = page.locator(".hit[data-id=t1]")
    snippet = item.locator(".text").text_content()
    assert len(snippet) < 300 and snippet.endswith("…") and "Tortoises live long" in snippet
    marks = {m.lower() for m in item.locator(".text mark").all_text_contents()}
    assert {"tortoises", "live", "long"} <= marks
    title_marks = [m.lower() for m in item.locator("h2 mark").all_text_contents()]
    assert title_marks == ["tortoises", "live", "long"]              # "why", "do": stop words, not highlighted
    assert "lang: en" in item.locator(".meta").text_content() and "year: 2021" in item.locator(".meta").text_content()
    item.locator(".more").click()
    assert item.locator(".text").text_content() == LONG
    assert item.locator(".more").get_attribute("aria-expanded") == "true"
    evil = page.locator(".hit[data-id=x1]")
    assert evil.locator(".text").text_content().startswith("<img src=x")
    assert evil.locator("h2").text_content().endswith("<b>bold</b> title")
    assert page.evaluate("window.hacked") is None and page.locator(".hit img, .hit h2 b").count() == 0
    page.close()


def test_keyboard_only(servers, browser):
    url, _ = servers["dense"]
    page = _open(browser, url)
    page.click("body")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "query"
    page.keyboard.type("tortoises long lives")
    page.keyboard.press("Enter")
    page.wait_for_selector(".hit")
    page.keyboard.press("Escape")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("j")
    page.keyboard.press("j")
    ids = page.eval_on_selector_all(".hit", "els => els.map(e => e.dataset.id)")
    assert page.evaluate("document.activeElement.dataset.id") == ids[1]
    page.keyboard.press("k")
    assert page.evaluate("document.activeElement.dataset.id") == ids[0]
    target = ids.index("t1")
    for _ in range(target):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("o")
    assert page.locator(".hit[data-id=t1] .text").text_content() == LONG
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "query"
    assert "q=tortoises" in page.url                         # the search can be shared or reloaded
    page.close()


def test_phone_width_has_no_sideways_scrolling(servers, browser):
    url, _ = servers["hybrid"]
    page = _open(browser, url, viewport={"width": 360, "height": 740}, is_mobile=True)
    page.fill("#api-key", KEY)
    _search(page, "tortoises")
    assert page.locator(".hit").count() > 0
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360
    box = page.locator("#go").bounding_box()
    assert box["width"] > 300                                # a full-width button, easy to tap
    page.close()
