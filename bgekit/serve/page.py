"""The search page served at ``GET /`` of ``bgekit serve --index-dir DIR``.

One self-contained HTML file (no external assets, works offline). It asks the server what it has before
offering anything: ``GET /health`` (public) gives the index size, the model, the reranker, the index's vector
kinds (``index.outputs``) and whether its search reranks (``index.rerank``); ``GET /info`` answering 401 means
the server wants an API key, and only then is the key box shown, with what it is for.

- Hits show the title (the id when there is none), the id and metadata, a snippet around the query's words with
  them highlighted, and a button that expands the full text.
- Only the scores of the stages that ran are shown (the response's ``stages``), the final one first.
- Modes are offered only when the index holds their vectors (dense, sparse, hybrid = both). A server without
  ``index.outputs`` in /health gets all three, and one the index refuses is removed after its error.
- The rerank box is shown only with a reranker, starts as the server's default (checked: a loaded reranker is
  used unless a request says otherwise), and the request always says ``rerank`` explicitly.
- Keyboard: ``/`` focuses the query, Enter searches, ``j`` / ``k`` (or the arrow keys) move between hits,
  ``o`` or Enter expands the selected hit, Escape returns to the query.
- Document text reaches the page through ``textContent`` / text nodes only, never as HTML.
- An index built with a Visualized-BGE model (``render(..., images=True)``): hits with an image show a thumbnail
  (``GET /document-image?id=``, fetched with the key like every request), and an image file can be chosen as
  the query (alone, or with the text as a composed query), sent base64 to ``POST /search/image``.
"""

STYLE = """
 :root { --fg: #1d1d1f; --muted: #62626a; --line: #e2e2e6; --accent: #1f5fbf; --mark: #ffe58a; }
 * { box-sizing: border-box; }
 body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 52rem; margin: 0 auto;
        padding: 1rem; color: var(--fg); }
 header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
 h1 { font-size: 1.5rem; margin: .25rem 0; }
 #about { color: var(--muted); font-size: .9rem; }
 form { display: grid; grid-template-columns: 1fr auto; gap: .5rem; margin: .75rem 0; }
 #query { font-size: 1.05rem; padding: .6rem .7rem; border: 1px solid #b8b8c0; border-radius: .4rem; width: 100%; }
 #go { padding: .6rem 1.1rem; font-size: 1rem; border-radius: .4rem; border: 1px solid var(--accent);
       background: var(--accent); color: #fff; cursor: pointer; }
 .options { grid-column: 1 / -1; display: flex; gap: .9rem; flex-wrap: wrap; align-items: center; color: var(--muted);
            font-size: .92rem; }
 .options select, .options input[type=number] { font-size: .92rem; padding: .25rem; }
 .options input[type=number] { width: 4.2rem; }
 #key-row { grid-column: 1 / -1; font-size: .9rem; color: var(--muted); }
 #key-row input { font-size: .95rem; padding: .35rem; width: min(22rem, 100%); }
 #status { color: var(--muted); margin: .5rem 0 1rem; min-height: 1.5em; }
 #status.error { color: #b00020; }
 ol#hits { list-style: none; padding: 0; margin: 0; }
 .hit { border-top: 1px solid var(--line); padding: .8rem .5rem; border-radius: .3rem; }
 .hit:focus, .hit.selected { outline: 2px solid var(--accent); outline-offset: -2px; background: #f6f8fc; }
 .hit h2 { font-size: 1.05rem; margin: 0 0 .2rem; line-height: 1.35; }
 .hit h2 .rank { color: var(--muted); font-weight: normal; margin-right: .35rem; }
 .meta { font-size: .82rem; color: var(--muted); display: flex; flex-wrap: wrap; gap: .25rem .6rem; }
 .meta code { font-size: .82rem; }
 .text { margin: .35rem 0; overflow-wrap: anywhere; }
 mark { background: var(--mark); color: inherit; padding: 0 .1em; border-radius: .15em; }
 .more { background: none; border: none; color: var(--accent); cursor: pointer; padding: 0; font-size: .9rem; }
 .scores { font-size: .82rem; color: var(--muted); font-variant-numeric: tabular-nums; display: flex; flex-wrap: wrap;
           gap: .2rem .9rem; }
 .scores b { color: var(--fg); }
 footer { margin-top: 2rem; border-top: 1px solid var(--line); padding-top: .6rem; font-size: .85rem; color: var(--muted); }
 kbd { border: 1px solid #c8c8d0; border-bottom-width: 2px; border-radius: .25rem; padding: 0 .3em; font-size: .8em; }
 a { color: var(--accent); }
 .hit.with-thumb { display: grid; grid-template-columns: 6.5rem 1fr; gap: 0 .8rem; }
 .thumb { width: 6.5rem; height: 6.5rem; object-fit: cover; border-radius: .3rem; background: var(--line);
          grid-row: span 4; }
 #image-preview { height: 2.2rem; width: 2.2rem; object-fit: cover; border-radius: .2rem; vertical-align: middle; }
 @media (max-width: 480px) { body { padding: .6rem; } h1 { font-size: 1.25rem; } form { grid-template-columns: 1fr; }
   #go { width: 100%; } }
"""

BODY = """
<header><h1>bgekit search</h1><span id="about"></span></header>
<form id="search-form" role="search">
  <input id="query" type="search" name="query" placeholder="Ask something, then press Enter" aria-label="query"
         autofocus required autocomplete="off">
  <button id="go" type="submit">Search</button>
  <div class="options">
    <label>mode <select id="mode" name="mode" title="which index vectors retrieve the hits"></select></label>
    <label>hits <input id="top-k" type="number" name="top_k" min="1" max="100" value="10"></label>
    <label id="rerank-label" hidden title="rescore the top hits with the server's reranker">
      <input id="rerank" type="checkbox" name="rerank"> rerank</label>
    <span id="image-row" hidden><label title="search by an image, alone or with the text">image
      <input id="image" type="file" name="image" accept="image/*"></label>
      <img id="image-preview" alt="the query image" hidden>
      <button id="clear-image" type="button" hidden>clear image</button></span>
  </div>
  <div id="key-row" hidden>
    <label>API key <input id="api-key" type="password" autocomplete="off" placeholder="the server's --api-key"></label>
    <div>This server was started with <code>--api-key</code>: searches need that key. It is kept in this browser
    only and sent as <code>Authorization: Bearer</code>.</div>
  </div>
</form>
<div id="status" role="status" aria-live="polite">__STATUS__</div>
<ol id="hits" aria-label="hits"></ol>
<footer>
  <div><kbd>/</kbd> search box &middot; <kbd>Enter</kbd> search &middot; <kbd>j</kbd>/<kbd>k</kbd> or
  <kbd>&darr;</kbd>/<kbd>&uarr;</kbd> next/previous hit &middot; <kbd>o</kbd> show or hide the full text &middot;
  <kbd>Esc</kbd> back to the box</div>
  <div>API: <code>POST /search</code>, <code>/v1/embeddings</code>, <code>/embed</code>, <code>/rerank</code>,
  <code>/v1/rerank</code>; <code>GET /health</code>, <code>/info</code>, <code>/metrics</code>.
  <a id="api-docs" href="/docs" hidden>API docs</a></div>
</footer>
"""

SCRIPT = r"""
const $ = (id) => document.getElementById(id);
const form = $("search-form"), statusBox = $("status"), list = $("hits"), keyBox = $("api-key");
const modeBox = $("mode"), rerankBox = $("rerank"), imageBox = $("image");
const IMAGES = __IMAGES__;  // the index was built with a Visualized-BGE model
const MODES = {dense: ["dense"], sparse: ["sparse"], hybrid: ["dense", "sparse"]};
const STOP = new Set("a an and are as at be by do does for from how in is it of on or the to was what when where which who why with".split(" "));
let hasReranker = false;
keyBox.value = localStorage.getItem("bgekit-api-key") || "";
$("image-row").hidden = !IMAGES;

function authHeaders() { return keyBox.value ? {"Authorization": "Bearer " + keyBox.value} : {}; }
function chosenImage() { return IMAGES && imageBox.files.length ? imageBox.files[0] : null; }
function showChosen() {
  const file = chosenImage();
  $("query").required = !file;
  $("clear-image").hidden = $("image-preview").hidden = !file;
  if (file) $("image-preview").src = URL.createObjectURL(file);
}
imageBox.addEventListener("change", showChosen);
$("clear-image").addEventListener("click", () => { imageBox.value = ""; showChosen(); $("query").focus(); });
function asDataUrl(file) {
  return new Promise((ok, fail) => {
    const reader = new FileReader();
    reader.onload = () => ok(reader.result); reader.onerror = () => fail(reader.error);
    reader.readAsDataURL(file);
  });
}
async function loadThumb(img, id) {  // fetched with the key: an <img src> could not send it
  try {
    const response = await fetch("/document-image?id=" + encodeURIComponent(id), {headers: authHeaders()});
    if (response.ok) img.src = URL.createObjectURL(await response.blob());
  } catch (err) { /* no thumbnail */ }
}

function setModes(outputs) {
  const keep = modeBox.value;
  modeBox.replaceChildren();
  for (const [mode, needs] of Object.entries(MODES)) {
    if (outputs && !needs.every((s) => outputs.includes(s))) continue;
    const opt = document.createElement("option");
    opt.value = opt.textContent = mode;
    modeBox.appendChild(opt);
  }
  if ([...modeBox.options].some((o) => o.value === keep)) modeBox.value = keep;
  modeBox.disabled = modeBox.options.length < 2;
}

async function learn() {
  setModes(null);
  try {
    const health = await (await fetch("/health")).json();
    const ix = health.index;
    setModes(ix && (ix.outputs || ix.signals) || null);
    // index.rerank: the index search has a reranker, and then uses it unless a request says rerank: false
    hasReranker = Boolean(ix && (ix.rerank !== undefined ? ix.rerank : health.reranker));
    $("rerank-label").hidden = !hasReranker;
    rerankBox.checked = hasReranker;
    const parts = [];
    if (ix) parts.push(ix.count + " documents");
    if (health.model) parts.push("model " + health.model);
    if (health.reranker) parts.push("reranker " + health.reranker);
    $("about").textContent = parts.join(" \u00b7 ");
  } catch (err) { /* the first search reports what is wrong */ }
  try { if ((await fetch("/info")).status === 401) $("key-row").hidden = false; } catch (err) {}
  try { if ((await fetch("/docs")).ok) $("api-docs").hidden = false; } catch (err) {}
}

function terms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return [...new Set(words.filter((w) => !STOP.has(w) && (w.length > 1 || /\p{N}/u.test(w))))];
}
function termPattern(words) {
  if (!words.length) return null;
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).sort((a, b) => b.length - a.length);
  return new RegExp("(?<![\\p{L}\\p{N}])(" + esc.join("|") + ")", "giu");
}
function highlighted(text, pattern) {   // text nodes and <mark> elements only: never HTML from a document
  const out = document.createDocumentFragment();
  let last = 0;
  if (pattern) for (const m of text.matchAll(pattern)) {
    out.append(text.slice(last, m.index));
    const mark = document.createElement("mark");
    mark.textContent = m[0];
    out.append(mark);
    last = m.index + m[0].length;
  }
  out.append(text.slice(last));
  return out;
}
function snippet(text, pattern, size) {  // the window of `size` characters holding the most query words
  if (text.length <= size) return {text, cut: false};
  let best = 0, bestCount = -1;
  const hits = pattern ? [...text.matchAll(pattern)].map((m) => m.index) : [];
  for (const start of [0, ...hits.map((i) => Math.max(0, i - 40))]) {
    const count = hits.filter((i) => i >= start && i < start + size).length;
    if (count > bestCount) { best = start; bestCount = count; }
  }
  let from = best ? text.lastIndexOf(" ", best) + 1 : 0, to = Math.min(text.length, from + size);
  if (to < text.length) to = Math.max(from + size / 2, text.lastIndexOf(" ", to));
  return {text: (from ? "\u2026" : "") + text.slice(from, to) + (to < text.length ? "\u2026" : ""), cut: true};
}
function fmt(x) { return typeof x === "number" ? x.toFixed(4) : "\u2013"; }

function hitItem(hit, stages, pattern) {
  const li = document.createElement("li");
  li.className = "hit"; li.tabIndex = 0; li.dataset.id = hit.id;
  const h2 = document.createElement("h2");
  const rank = document.createElement("span"); rank.className = "rank"; rank.textContent = hit.rank + ".";
  h2.append(rank, highlighted(hit.title || hit.id, pattern));
  const meta = document.createElement("div"); meta.className = "meta";
  const id = document.createElement("span"); id.append("id "); const code = document.createElement("code");
  code.textContent = hit.id; id.append(code); meta.append(id);
  for (const [k, v] of Object.entries(hit.metadata || {})) {
    const span = document.createElement("span"); span.className = "field";
    span.textContent = k + ": " + (typeof v === "string" ? v : JSON.stringify(v)); meta.append(span);
  }
  const text = document.createElement("p"); text.className = "text";
  const short = snippet(hit.text, pattern, 260);
  text.append(highlighted(short.text, pattern));
  li.append(h2, meta, text);
  if (short.cut) {
    const more = document.createElement("button");
    more.type = "button"; more.className = "more"; more.textContent = "Show full text";
    more.setAttribute("aria-expanded", "false");
    more.addEventListener("click", () => toggle(li));
    li._texts = {short: short.text, full: hit.text, pattern};
    li.append(more);
  }
  if (IMAGES && typeof (hit.metadata || {}).image === "string") {
    const img = document.createElement("img");
    img.className = "thumb"; img.alt = "image of " + hit.id;
    li.classList.add("with-thumb"); li.prepend(img);
    loadThumb(img, hit.id);
  }
  const scores = document.createElement("div"); scores.className = "scores";
  const final = document.createElement("span"); const b = document.createElement("b");
  b.textContent = fmt(hit.score); final.append("score ", b);
  final.title = "the last stage's score: " + stages[stages.length - 1]; scores.append(final);
  for (const s of stages) {
    if (!(s in hit.scores)) continue;
    const span = document.createElement("span"); span.className = "score-" + s;
    span.textContent = s + " " + fmt(hit.scores[s]); scores.append(span);
  }
  li.append(scores);
  return li;
}
function toggle(li) {
  const more = li.querySelector(".more");
  if (!more) return;
  const open = more.getAttribute("aria-expanded") !== "true";
  const t = li._texts, p = li.querySelector(".text");
  p.replaceChildren(highlighted(open ? t.full : t.short, t.pattern));
  more.textContent = open ? "Show less" : "Show full text";
  more.setAttribute("aria-expanded", String(open));
  li.classList.toggle("open", open);
}

async function search() {
  const query = $("query").value.trim(), file = chosenImage();
  if (!query && !file) return;
  const body = {query, mode: modeBox.value, top_k: parseInt($("top-k").value, 10) || 10};
  if (hasReranker) body.rerank = rerankBox.checked;
  const headers = {"Content-Type": "application/json", ...authHeaders()};
  if (keyBox.value) localStorage.setItem("bgekit-api-key", keyBox.value);
  statusBox.className = ""; statusBox.textContent = "searching\u2026";
  const started = performance.now();
  try {
    const route = file ? "/search/image" : "/search";
    const sent = file ? {image: await asDataUrl(file), query: query || null, top_k: body.top_k} : body;
    const response = await fetch(route, {method: "POST", headers, body: JSON.stringify(sent)});
    const data = await response.json();
    if (!response.ok) {
      const message = (data.error && (data.error.message || data.error)) || response.statusText;
      if (response.status === 401) { $("key-row").hidden = false; keyBox.focus(); }
      const held = /the index holds ([a-z, ]+)/.exec(message);
      if (held) setModes(held[1].split(", "));
      throw new Error(message);
    }
    const pattern = termPattern(terms(query));
    list.replaceChildren(...data.hits.map((hit) => hitItem(hit, data.stages, pattern)));
    statusBox.textContent = data.hits.length + " hits in " + Math.round(performance.now() - started) + " ms \u00b7 "
      + data.stages.join(" \u2192 ");
    if (!file) history.replaceState(null, "", "?q=" + encodeURIComponent(query) + "&mode=" + body.mode);
  } catch (err) {
    list.replaceChildren();
    statusBox.className = "error";
    statusBox.textContent = "error: " + err.message;
  }
}
form.addEventListener("submit", (event) => { event.preventDefault(); search(); });

function hits() { return [...list.querySelectorAll(".hit")]; }
document.addEventListener("keydown", (event) => {
  const inField = /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
  if (event.key === "/" && !inField) { event.preventDefault(); $("query").focus(); $("query").select(); return; }
  if (event.key === "Escape") { $("query").focus(); return; }
  if (inField || event.ctrlKey || event.metaKey || event.altKey) return;
  const all = hits(), at = all.indexOf(document.activeElement);
  const step = {j: 1, ArrowDown: 1, k: -1, ArrowUp: -1}[event.key];
  if (step && all.length) {
    event.preventDefault();
    all[Math.min(all.length - 1, Math.max(0, at < 0 ? 0 : at + step))].focus();
  } else if ((event.key === "o" || event.key === "Enter") && at >= 0 && event.target === all[at]) {
    event.preventDefault(); toggle(all[at]);
  }
});

learn().then(() => {
  const params = new URLSearchParams(location.search);
  if (params.get("mode") && [...modeBox.options].some((o) => o.value === params.get("mode"))) modeBox.value = params.get("mode");
  if (params.get("q")) { $("query").value = params.get("q"); search(); }
});
"""

PAGE = ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>bgekit search</title>\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<style>" + STYLE + "</style>\n"
        "</head>\n<body>" + BODY + "<script>" + SCRIPT + "</script>\n</body>\n</html>\n")


def render(status: str, images: bool = False) -> str:
    """The page with a first status line (HTML-escaped); ``images``: offer image queries and show thumbnails.

    Example:
        >>> page = render("Search <the> index.")
        >>> "Search &lt;the&gt; index." in page and page.startswith("<!doctype html>")
        True
    """
    import html

    return PAGE.replace("__STATUS__", html.escape(status)).replace("__IMAGES__", "true" if images else "false")
