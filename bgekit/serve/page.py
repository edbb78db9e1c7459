"""The small search page served at ``GET /``: a query box, and hits with their dense, sparse and reranker scores.

Plain HTML and JavaScript, no external assets; document text is inserted with ``textContent`` only.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bgekit search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 form { display: flex; gap: .5rem; flex-wrap: wrap; margin-bottom: 1rem; }
 input[type=search] { flex: 1 1 20rem; padding: .5rem; font-size: 1rem; }
 select, button, input { padding: .45rem; }
 table { border-collapse: collapse; width: 100%; }
 th, td { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
 td.num { font-variant-numeric: tabular-nums; text-align: right; white-space: nowrap; }
 #status { color: #666; margin: .5rem 0; }
 .error { color: #b00020; }
</style>
</head>
<body>
<h1>bgekit search</h1>
<form id="search-form">
  <input id="query" type="search" name="query" placeholder="Ask something..." autofocus required>
  <select id="mode" name="mode">
    <option value="dense">dense</option><option value="sparse">sparse</option><option value="hybrid">hybrid</option>
  </select>
  <input id="top-k" type="number" name="top_k" min="1" max="100" value="10" title="hits">
  <label><input id="rerank" type="checkbox" name="rerank"> rerank</label>
  <input id="api-key" type="password" placeholder="API key (if needed)" autocomplete="off">
  <button id="go" type="submit">Search</button>
</form>
<div id="status">__STATUS__</div>
<table id="hits" hidden>
  <thead><tr><th>#</th><th>id</th><th>text</th><th>dense</th><th>sparse</th><th>rerank</th><th>score</th></tr></thead>
  <tbody></tbody>
</table>
<script>
const form = document.getElementById("search-form");
const statusBox = document.getElementById("status");
const table = document.getElementById("hits");
const keyBox = document.getElementById("api-key");
keyBox.value = localStorage.getItem("bgekit-api-key") || "";
function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}
function fmt(x) { return typeof x === "number" ? x.toFixed(4) : ""; }
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    query: document.getElementById("query").value,
    mode: document.getElementById("mode").value,
    top_k: parseInt(document.getElementById("top-k").value, 10) || 10,
  };
  if (document.getElementById("rerank").checked) body.rerank = true;
  const headers = {"Content-Type": "application/json"};
  if (keyBox.value) { headers["Authorization"] = "Bearer " + keyBox.value; localStorage.setItem("bgekit-api-key", keyBox.value); }
  statusBox.className = ""; statusBox.textContent = "searching...";
  const started = performance.now();
  try {
    const response = await fetch("/search", {method: "POST", headers, body: JSON.stringify(body)});
    const data = await response.json();
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    const tbody = table.querySelector("tbody");
    tbody.replaceChildren();
    for (const hit of data.hits) {
      const row = document.createElement("tr");
      row.className = "hit";
      cell(row, String(hit.rank)); cell(row, hit.id); cell(row, hit.text);
      cell(row, fmt(hit.scores.dense), "num dense"); cell(row, fmt(hit.scores.sparse), "num sparse");
      cell(row, fmt(hit.scores.rerank), "num rerank"); cell(row, fmt(hit.score), "num score");
      tbody.appendChild(row);
    }
    table.hidden = false;
    statusBox.textContent = data.hits.length + " hits in " + Math.round(performance.now() - started) + " ms";
  } catch (err) {
    table.hidden = true;
    statusBox.className = "error";
    statusBox.textContent = "error: " + err.message;
  }
});
</script>
</body>
</html>
"""


def render(status: str) -> str:
    """The page with a first status line (escaped)."""
    import html

    return PAGE.replace("__STATUS__", html.escape(status))
