"""The benchmark families FlagEmbedding evaluates, by name, from a local folder or the Hugging Face hub.

``load_benchmark("beir", "scifact", dataset_dir="data")`` reads ``data/scifact`` when it is there (BEIR or
custom layout); otherwise it downloads the public dataset, saves it there in the custom layout (atomically),
and loads it. Each family is a table row saying which hub datasets hold its corpus, queries and judgements.

Families and where the hub path reads from:

- beir: ``BeIR/{name}`` (corpus, queries) and ``BeIR/{name}-qrels``.
- msmarco: passage, split dev (``Tevatron/msmarco-passage-corpus``, ``BeIR/msmarco``); TREC DL and the
  document collection are not on the hub: prepare a local folder.
- miracl: ``miracl/miracl-corpus`` and the topic / qrels files of ``miracl/miracl``.
- mldr: ``Shitao/MLDR`` (``corpus-{lang}`` and ``{lang}``).
- mkqa: BeIR/nq's corpus and the MKQA test file of ``Shitao/bge-m3-data``; judged by answers (QA recall).
- air-bench: ``AIR-Bench/{task}_{domain}_{lang}`` (name ``"{task}_{domain}_{lang}/{dataset}"``, dev split;
  test judgements are held back by the benchmark).
- bright: ``xlangai/BRIGHT`` (documents and examples; excluded ids are dropped from results).
- mteb / c-mteb: retrieval tasks in ``mteb/{name}`` and ``C-MTEB/{name}`` (+ ``C-MTEB/{name}-qrels``).

Reads go through :func:`hub_rows` (``datasets.load_dataset``) and :func:`hub_file`
(``huggingface_hub.hf_hub_download``), the two places tests replace with fakes.
"""
from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from bgekit.eval.data import RetrievalData, detect_layout, load_folder, restrict_to_judged
from bgekit.io import atomic_open


@dataclass(frozen=True)
class Read:
    """One hub read: a ``datasets`` config and split, or a file of a dataset repo (a zip member, or TSV)."""

    repo: str
    config: str | None = None
    split: str | None = None
    file: str | None = None
    member: str | None = None


def hub_rows(read: Read, cache_dir: str | None = None) -> Iterable[Any]:
    """Rows of a hub dataset split (dicts), or of a file in a dataset repo (dicts for jsonl, lists for TSV)."""
    if read.file is not None:
        path = hub_file(read.repo, read.file, cache_dir)
        if read.member is not None:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n == read.member or n.endswith("/" + read.member)]
                if not names:
                    raise FileNotFoundError(f"{read.repo}/{read.file} has no member {read.member!r}")
                text = z.read(names[0]).decode("utf-8")
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        if (read.member or read.file).endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return [row for row in csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    try:
        import datasets
    except ImportError as e:
        raise ImportError("downloading benchmarks needs the `datasets` package (pip install datasets), "
                          "or pass a local dataset folder") from e
    try:
        return datasets.load_dataset(read.repo, read.config, split=read.split, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; re-raised with what was asked
        raise OSError(f"could not load {read.repo} (config {read.config!r}, split {read.split!r}) from the hub: "
                      f"{type(e).__name__}: {e}. Offline? Pass a local folder (--dataset-dir).") from e


def hub_file(repo: str, filename: str, cache_dir: str | None = None) -> str:
    """Download (or find in the cache) one file of a dataset repo; returns its local path."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, repo_type="dataset", cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001
        raise OSError(f"could not download {filename} from dataset {repo}: {type(e).__name__}: {e}. "
                      "Offline? Pass a local folder (--dataset-dir).") from e


def _doc(id_key: str, text_key: str, title_key: str | None = "title") -> Callable:
    return lambda r: (str(r[id_key]), (r.get(title_key) or "") if title_key else "", r[text_key] or "")


def _query(id_key: str, text_key: str) -> Callable:
    return lambda r: (str(r[id_key]), r[text_key])


def _judged(q: str, d: str, s: str) -> Callable:
    return lambda r: [(str(r[q]), str(r[d]), int(r[s]))]


def _positives(q: str, list_key: str, doc_key: str | None = None) -> Callable:
    return lambda r: [(str(r[q]), str(p[doc_key] if doc_key else p), 1) for p in r[list_key]]


def _tsv_query(row: list) -> tuple[str, str]:
    return str(row[0]), row[1]


def _trec_qrels(row: list) -> list:
    return [(str(row[0]), str(row[2]), int(row[3]))]


@dataclass(frozen=True)
class Plan:
    """Where a dataset's pieces come from and how to read their rows."""

    corpus: tuple[Read, Callable]
    queries: tuple[Read, Callable]
    judged: tuple[Read, Callable]   # rows -> [(qid, docid, relevance)], or (qid, answers) for kind "answers"
    kind: str = "qrels"             # "qrels" or "answers"
    excluded: tuple[Read, Callable] | None = None


def _beir(name: str, split: str) -> Plan:
    return Plan((Read(f"BeIR/{name}", "corpus", "corpus"), _doc("_id", "text")),
                (Read(f"BeIR/{name}", "queries", "queries"), _query("_id", "text")),
                (Read(f"BeIR/{name}-qrels", None, "validation" if split == "dev" else split), _judged("query-id", "corpus-id", "score")))


def _msmarco(name: str, split: str) -> Plan:
    if name != "passage" or split != "dev":
        raise ValueError(f"msmarco {name} {split}: only passage/dev is on the hub; prepare a local folder for the rest")
    return Plan((Read("Tevatron/msmarco-passage-corpus", "default", "train"), _doc("docid", "text")),
                (Read("BeIR/msmarco", "queries", "queries"), _query("_id", "text")),
                (Read("BeIR/msmarco-qrels", None, "validation"), _judged("query-id", "corpus-id", "score")))


def _miracl(lang: str, split: str) -> Plan:
    base = f"miracl-v1.0-{lang}"
    return Plan((Read("miracl/miracl-corpus", lang, "train"), _doc("docid", "text")),
                (Read("miracl/miracl", file=f"{base}/topics/topics.{base}-{split}.tsv"), _tsv_query),
                (Read("miracl/miracl", file=f"{base}/qrels/qrels.{base}-{split}.tsv"), _trec_qrels))


def _mldr(lang: str, split: str) -> Plan:
    return Plan((Read("Shitao/MLDR", f"corpus-{lang}", "corpus"), _doc("docid", "text", None)),
                (Read("Shitao/MLDR", lang, split), _query("query_id", "query")),
                (Read("Shitao/MLDR", lang, split), _positives("query_id", "positive_passages", "docid")))


def _mkqa(lang: str, split: str) -> Plan:
    rows = Read("Shitao/bge-m3-data", file="MKQA_test-data.zip", member=f"{lang}.jsonl")
    return Plan((Read("BeIR/nq", "corpus", "corpus"), _doc("_id", "text")), (rows, _query("id", "question")),
                (rows, lambda r: (str(r["id"]), [str(a) for a in r["answers"]])), kind="answers")


def _air_bench(name: str, split: str, version: str = "AIR-Bench_24.05") -> Plan:
    if "/" not in name:
        raise ValueError(f"air-bench names look like 'qa_wiki_en/default' (task_domain_language/dataset), got {name!r}")
    repo, ds = name.split("/", 1)
    qrels_repo = f"AIR-Bench/qrels-{repo}" if split == "test" else f"AIR-Bench/{repo}"
    return Plan((Read(f"AIR-Bench/{repo}", version, f"corpus_{ds}"), _doc("id", "text", None)),
                (Read(f"AIR-Bench/{repo}", version, f"queries_{ds}_{split}"), _query("id", "text")),
                (Read(qrels_repo, version, f"qrels_{ds}_{split}"), _judged("qid", "docid", "relevance")))


def _bright(name: str, split: str) -> Plan:
    examples = Read("xlangai/BRIGHT", split, name)
    return Plan((Read("xlangai/BRIGHT", "documents", name), _doc("id", "content", None)),
                (examples, _query("id", "query")), (examples, _positives("id", "gold_ids")),
                excluded=(examples, lambda r: (str(r["id"]), [str(d) for d in r.get("excluded_ids") or [] if d != "N/A"])))


def _mteb(name: str, split: str) -> Plan:
    return Plan((Read(f"mteb/{name}", "corpus", "corpus"), _doc("_id", "text")),
                (Read(f"mteb/{name}", "queries", "queries"), _query("_id", "text")),
                (Read(f"mteb/{name}", "default", split), _judged("query-id", "corpus-id", "score")))


def _cmteb(name: str, split: str) -> Plan:
    return Plan((Read(f"C-MTEB/{name}", "corpus", "corpus"), _doc("id", "text", None)),
                (Read(f"C-MTEB/{name}", "queries", "queries"), _query("id", "text")),
                (Read(f"C-MTEB/{name}-qrels", None, split), _judged("qid", "pid", "score")))


_LANGS_MIRACL = ("ar", "bn", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "zh", "de", "yo")
_LANGS_MLDR = ("ar", "de", "en", "es", "fr", "hi", "it", "ja", "ko", "pt", "ru", "th", "zh")
_LANGS_MKQA = ("en", "ar", "fi", "ja", "ko", "ru", "es", "sv", "he", "th", "da", "de", "fr", "it", "nl", "pl", "pt",
               "hu", "vi", "ms", "km", "no", "tr", "zh_cn", "zh_hk", "zh_tw")
# family -> (plan builder, dataset names or None for any, splits, default split)
FAMILIES: dict[str, tuple[Callable[[str, str], Plan], tuple[str, ...] | None, tuple[str, ...], str]] = {
    "beir": (_beir, ("arguana", "climate-fever", "dbpedia-entity", "fever", "fiqa", "hotpotqa", "msmarco", "nfcorpus",
                     "nq", "quora", "scidocs", "scifact", "trec-covid", "webis-touche2020"), ("test", "dev", "train"), "test"),
    "msmarco": (_msmarco, ("passage", "document"), ("dev", "dl19", "dl20"), "dev"),
    "miracl": (_miracl, _LANGS_MIRACL, ("dev", "train"), "dev"),
    "mldr": (_mldr, _LANGS_MLDR, ("dev", "test", "train"), "test"),
    "mkqa": (_mkqa, _LANGS_MKQA, ("test",), "test"),
    "air-bench": (_air_bench, None, ("dev", "test"), "dev"),
    "bright": (_bright, ("biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow",
                         "sustainable_living", "leetcode", "pony", "aops", "theoremqa_questions", "theoremqa_theorems"),
               ("examples", "Gemini-1.0_reason", "claude-3-opus_reason", "gpt4_reason", "grit_reason", "llama3-70b_reason"),
               "examples"),
    "mteb": (_mteb, None, ("test", "dev", "train"), "test"),
    "c-mteb": (_cmteb, ("T2Retrieval", "MMarcoRetrieval", "DuRetrieval", "CovidRetrieval", "CmedqaRetrieval",
                        "EcomRetrieval", "MedicalRetrieval", "VideoRetrieval"), ("dev",), "dev"),
}


def plan_for(family: str, name: str, split: str) -> Plan:
    """The hub reads for one dataset split; unknown families, names and splits list the valid ones."""
    if family not in FAMILIES:
        raise ValueError(f"unknown benchmark family {family!r}; valid: {', '.join(FAMILIES)}")
    build, names, splits, _ = FAMILIES[family]
    if names is not None and name not in names:
        raise ValueError(f"{family} has no dataset {name!r}; valid: {', '.join(names)}")
    if split not in splits:
        raise ValueError(f"{family} has no split {split!r}; valid: {', '.join(splits)}")
    return build(name, split)


def download(family: str, name: str, split: str | None = None, cache_dir: str | None = None) -> RetrievalData:
    """Read a benchmark split from the hub (see the module docstring for the sources)."""
    split = split or FAMILIES.get(family, (None, None, None, "test"))[3]
    plan = plan_for(family, name, split)
    ids, titles, texts = [], [], []
    for row in hub_rows(plan.corpus[0], cache_dir):
        doc_id, title, text = plan.corpus[1](row)
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    all_queries = dict(plan.queries[1](r) for r in hub_rows(plan.queries[0], cache_dir))
    answers, qrels = None, {}
    if plan.kind == "answers":
        answers = dict(plan.judged[1](r) for r in hub_rows(plan.judged[0], cache_dir))
        queries = {q: all_queries[q] for q in answers if q in all_queries}
    else:
        for r in hub_rows(plan.judged[0], cache_dir):
            for q, d, rel in plan.judged[1](r):
                qrels.setdefault(q, {})[d] = rel
        queries, qrels = restrict_to_judged(all_queries, qrels, set(ids), f"{plan.queries[0].repo} queries", f"{plan.judged[0].repo} qrels")
    excluded = {}
    if plan.excluded is not None:
        excluded = {q: set(ds) for q, ds in (plan.excluded[1](r) for r in hub_rows(plan.excluded[0], cache_dir)) if ds}
    return RetrievalData(name, split, ids, titles, texts, queries, qrels, source=f"hub:{family}/{name}",
                         excluded=excluded, answers=answers)


def save_custom(data: RetrievalData, folder: str) -> None:
    """Write ``data`` in FlagEmbedding's custom layout (corpus.jsonl, SPLIT_queries.jsonl, SPLIT_qrels.jsonl)."""
    def dump(path: str, rows: Iterable[dict]) -> None:
        with atomic_open(os.path.join(folder, path)) as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    dump("corpus.jsonl", ({"id": i, "title": t, "text": x} for i, t, x in zip(data.doc_ids, data.titles, data.texts)))
    dump(f"{data.split}_queries.jsonl", ({"id": q, "text": t} for q, t in data.queries.items()))
    if data.answers is not None:
        dump(f"{data.split}_answers.jsonl", ({"qid": q, "answers": a} for q, a in data.answers.items()))
    if data.excluded:
        dump(f"{data.split}_excluded.jsonl", ({"qid": q, "docids": sorted(d)} for q, d in data.excluded.items()))
    dump(f"{data.split}_qrels.jsonl", ({"qid": q, "docid": d, "relevance": r} for q, j in data.qrels.items() for d, r in j.items()))


def load_benchmark(family: str, name: str, split: str | None = None, dataset_dir: str | None = None,
                   cache_dir: str | None = None) -> RetrievalData:
    """A benchmark split: from ``dataset_dir/name`` when present, else downloaded (and saved there if given).

    Example:
        >>> data = load_benchmark("beir", "scifact", dataset_dir="../shared/data")  # a local copy: no download
        >>> data.split, len(data.doc_ids), len(data.queries)
        ('test', 5183, 300)
    """
    split = split or FAMILIES.get(family, (None, None, None, "test"))[3]
    plan_for(family, name, split)  # validate names before touching disk or network
    folder = os.path.join(dataset_dir, name) if dataset_dir else None
    if folder and os.path.isdir(folder):
        return _load_saved(folder, split, name)
    data = download(family, name, split, cache_dir)
    if folder:
        save_custom(data, folder)
    return data


def _load_saved(folder: str, split: str, name: str) -> RetrievalData:
    """A local folder, with the answers (MKQA) or excluded ids (BRIGHT) that :func:`save_custom` adds."""
    from bgekit.eval.data import read_corpus, read_queries
    from bgekit.io import iter_jsonl

    answers_path = os.path.join(folder, f"{split}_answers.jsonl")
    qrels_path = os.path.join(folder, f"{split}_qrels.jsonl")
    if not os.path.isfile(answers_path) and _holds_answers(qrels_path):
        answers_path = qrels_path  # FlagEmbedding's MKQA loader saves {"qid", "answers"} rows as SPLIT_qrels.jsonl
    if os.path.isfile(answers_path):
        ids, titles, texts = read_corpus(os.path.join(folder, "corpus.jsonl"), "id")
        all_queries = read_queries(os.path.join(folder, f"{split}_queries.jsonl"), "id")
        answers = {str(o["qid"]): [str(a) for a in o["answers"]] for _, o in iter_jsonl(answers_path)}
        queries = {q: all_queries[q] for q in answers if q in all_queries}
        return RetrievalData(name, split, ids, titles, texts, queries, {}, os.path.abspath(folder), answers=answers)
    data = load_folder(folder, split, detect_layout(folder), name=name)
    excluded_path = os.path.join(folder, f"{split}_excluded.jsonl")
    if os.path.isfile(excluded_path):
        data.excluded = {str(o["qid"]): set(o["docids"]) for _, o in iter_jsonl(excluded_path)}
    return data


def _holds_answers(path: str) -> bool:
    """True for a qrels file whose first row is ``{"qid", "answers"}`` (MKQA as FlagEmbedding saves it)."""
    from bgekit.io import iter_jsonl

    if not os.path.isfile(path):
        return False
    first = next((obj for _, obj in iter_jsonl(path)), {})
    return isinstance(first, dict) and "answers" in first and "docid" not in first
