"""Data loading: BEIR and custom layouts, the real SciFact files, and clear errors for bad input."""
import json
import logging
import os

import pytest

from bgekit.eval.data import RetrievalData, available_splits, detect_layout, load_folder

SCIFACT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scifact")


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def make_beir(root, qrels_lines=("q1\td1\t1", "q2\td2\t1")):
    write_jsonl(os.path.join(root, "corpus.jsonl"), [{"_id": "d1", "title": "Cats", "text": "Cats purr."},
                                                    {"_id": "d2", "title": "", "text": " Dogs bark. "},
                                                    {"_id": 3, "text": "Numeric id, no title."}])
    write_jsonl(os.path.join(root, "queries.jsonl"), [{"_id": "q1", "text": "cat sounds"}, {"_id": "q2", "text": "dog"},
                                                     {"_id": "q3", "text": "unjudged query"}])
    os.makedirs(os.path.join(root, "qrels"), exist_ok=True)
    with open(os.path.join(root, "qrels", "test.tsv"), "w", newline="") as f:
        f.write("query-id\tcorpus-id\tscore\r\n" + "".join(line + "\r\n" for line in qrels_lines))
    return root


def test_beir_layout(tmp_path):
    data = load_folder(make_beir(str(tmp_path)))
    assert detect_layout(str(tmp_path)) == "beir" and available_splits(str(tmp_path)) == ["test"]
    assert data.doc_ids == ["d1", "d2", "3"]
    assert data.documents() == ["Cats Cats purr.", "Dogs bark.", "Numeric id, no title."]
    assert data.queries == {"q1": "cat sounds", "q2": "dog"}         # q3 has no qrels: not evaluated
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def test_custom_layout(tmp_path):
    root = str(tmp_path)
    write_jsonl(os.path.join(root, "corpus.jsonl"), [{"id": "a", "text": "alpha"}, {"id": "b", "title": "B", "text": "beta"}])
    write_jsonl(os.path.join(root, "dev_queries.jsonl"), [{"id": "x", "text": "first letter"}])
    write_jsonl(os.path.join(root, "dev_qrels.jsonl"), [{"qid": "x", "docid": "a", "relevance": 1}])
    data = load_folder(root, split="dev")
    assert detect_layout(root) == "custom"
    assert data.documents() == ["alpha", "B beta"] and data.qrels == {"x": {"a": 1}}


def test_real_scifact_test_split():
    data = load_folder(SCIFACT, split="test")
    assert len(data.doc_ids) == 5183 and len(data.queries) == 300
    assert sum(len(v) for v in data.qrels.values()) == 339           # CRLF and the header line handled
    train = load_folder(SCIFACT, split="train")
    assert len(train.queries) == 809 and data.corpus_fingerprint == train.corpus_fingerprint
    assert data.fingerprint != train.fingerprint
    small = data.subset(20, 200)
    assert len(small.doc_ids) == 200 and len(small.queries) == 20
    assert all(d in set(small.doc_ids) for q in small.qrels for d in small.qrels[q])


def test_fingerprint_follows_content(tmp_path):
    a = load_folder(make_beir(str(tmp_path / "a")))
    b = load_folder(make_beir(str(tmp_path / "b")))
    assert a.fingerprint == b.fingerprint                            # same content, other folder
    c = load_folder(make_beir(str(tmp_path / "c"), qrels_lines=("q1\td1\t1",)))
    assert c.corpus_fingerprint == a.corpus_fingerprint and c.fingerprint != a.fingerprint


def test_malformed_line_names_file_and_line(tmp_path):
    root = make_beir(str(tmp_path))
    write_jsonl(os.path.join(root, "corpus.jsonl"), [{"_id": "d1", "text": "ok"}, '{"_id": "d2", "text": '])
    with pytest.raises(ValueError, match=r"corpus\.jsonl:2: not valid JSON"):
        load_folder(root)
    write_jsonl(os.path.join(root, "corpus.jsonl"), [{"_id": "d1"}])
    with pytest.raises(ValueError, match=r"corpus\.jsonl:1: missing field 'text'"):
        load_folder(root)
    write_jsonl(os.path.join(root, "corpus.jsonl"), [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}])
    with pytest.raises(ValueError, match="duplicate document id 'd1'"):
        load_folder(root)


def test_bad_qrels_line(tmp_path):
    root = make_beir(str(tmp_path), qrels_lines=("q1\td1\t1", "q2\td2"))
    with pytest.raises(ValueError, match=r"test\.tsv:3: expected 3 tab-separated columns"):
        load_folder(root)
    root = make_beir(str(tmp_path / "b"), qrels_lines=("q1\td1\thigh",))
    with pytest.raises(ValueError, match=r"test\.tsv:2: relevance score 'high'"):
        load_folder(root)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_folder(str(tmp_path / "nowhere"))
    root = make_beir(str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match=r"qrels for split 'dev'.*splits present: test"):
        load_folder(root, split="dev")
    os.remove(os.path.join(root, "queries.jsonl"))
    with pytest.raises(FileNotFoundError, match="no queries file"):
        load_folder(root)
    with pytest.raises(FileNotFoundError, match="not a BEIR folder"):
        load_folder(str(tmp_path))


def test_unknown_query_ids_warn_with_count(tmp_path, caplog):
    root = make_beir(str(tmp_path), qrels_lines=("q1\td1\t1", "zz\td1\t1", "yy\td2\t1", "q2\tmissing-doc\t1"))
    with caplog.at_level(logging.WARNING, logger="bgekit.eval.data"):
        data = load_folder(root)
    assert "2 query id(s)" in caplog.text and "1 document id(s)" in caplog.text
    assert set(data.queries) == {"q1", "q2"}


def test_empty_corpus_and_no_queries(tmp_path):
    root = make_beir(str(tmp_path))
    write_jsonl(os.path.join(root, "corpus.jsonl"), [])
    with pytest.raises(ValueError, match="corpus is empty"):
        load_folder(root)
    root = make_beir(str(tmp_path / "b"), qrels_lines=("nope\td1\t1",))
    with pytest.raises(ValueError, match="no query of split 'test'"):
        load_folder(root)
    with pytest.raises(ValueError, match="corpus is empty"):
        RetrievalData("x", "test", [], [], [], {"q": "t"}, {"q": {"d": 1}})
