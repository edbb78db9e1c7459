"""Named benchmarks: the hub path with `datasets.load_dataset` and `hf_hub_download` replaced by fakes."""
import sys
import types
import zipfile

import pytest

from bgekit.eval import hub
from bgekit.eval.hub import load_benchmark, plan_for

HUB = {  # (repo, config, split) -> rows, as datasets.load_dataset would give them
    ("BeIR/scifact", "corpus", "corpus"): [{"_id": "d1", "title": "T1", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}],
    ("BeIR/scifact", "queries", "queries"): [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}],
    ("BeIR/scifact-qrels", None, "test"): [{"query-id": "q1", "corpus-id": "d2", "score": 1},
                                          {"query-id": "q9", "corpus-id": "d1", "score": 1}],
    ("miracl/miracl-corpus", "sw", "train"): [{"docid": "1#0", "title": "Kenya", "text": "Nairobi"}],
    ("BeIR/nq", "corpus", "corpus"): [{"_id": "n1", "title": "France", "text": "Its capital is Paris."},
                                     {"_id": "n2", "title": "", "text": "Rome is in Italy."}],
    ("xlangai/BRIGHT", "documents", "biology"): [{"id": "b1", "content": "cells"}, {"id": "b2", "content": "genes"}],
    ("xlangai/BRIGHT", "examples", "biology"): [{"id": "0", "query": "what is dna", "gold_ids": ["b2"], "excluded_ids": ["b1"]}],
}


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    calls = []

    def load_dataset(repo, config=None, split=None, cache_dir=None):
        calls.append((repo, config, split))
        if (repo, config, split) not in HUB:
            raise FileNotFoundError(f"no such dataset {repo}")
        return list(HUB[(repo, config, split)])

    files = {
        ("miracl/miracl", "miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-dev.tsv"): "7\tmji mkuu wa Kenya\n",
        ("miracl/miracl", "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv"): "7\tQ0\t1#0\t1\n",
    }
    archive = tmp_path / "MKQA_test-data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("MKQA_test-data/en.jsonl", '{"id": "m1", "question": "capital of france", "answers": ["Paris"]}\n')

    def hf_hub_download(repo, filename, repo_type=None, cache_dir=None):
        assert repo_type == "dataset"
        calls.append((repo, filename))
        if (repo, filename) == ("Shitao/bge-m3-data", "MKQA_test-data.zip"):
            return str(archive)
        path = tmp_path / filename.replace("/", "_")
        path.write_text(files[(repo, filename)])
        return str(path)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def test_beir_download_saves_a_local_copy(fake_hub, tmp_path, caplog):
    root = str(tmp_path / "data")
    data = load_benchmark("beir", "scifact", dataset_dir=root)
    assert data.doc_ids == ["d1", "d2"] and data.documents() == ["T1 one", "two"]
    assert data.queries == {"q1": "first"} and data.qrels == {"q1": {"d2": 1}}   # q9 has no text: warned, skipped
    assert "1 query id(s)" in caplog.text
    n_calls = len(fake_hub)
    again = load_benchmark("beir", "scifact", dataset_dir=root)                   # now from the saved folder
    assert len(fake_hub) == n_calls and again.fingerprint == data.fingerprint


def test_miracl_reads_topic_and_qrels_files(fake_hub):
    data = load_benchmark("miracl", "sw", split="dev")
    assert data.queries == {"7": "mji mkuu wa Kenya"} and data.qrels == {"7": {"1#0": 1}}
    assert data.documents() == ["Kenya Nairobi"]


def test_mkqa_is_judged_by_answers(fake_hub, tmp_path):
    root = str(tmp_path / "data")
    data = load_benchmark("mkqa", "en", dataset_dir=root)
    assert data.answers == {"m1": ["Paris"]} and data.queries == {"m1": "capital of france"} and data.qrels == {}
    assert load_benchmark("mkqa", "en", dataset_dir=root).answers == {"m1": ["Paris"]}


def test_bright_keeps_excluded_ids(fake_hub, tmp_path):
    root = str(tmp_path / "data")
    data = load_benchmark("bright", "biology", dataset_dir=root)
    assert data.qrels == {"0": {"b2": 1}} and data.excluded == {"0": {"b1"}}
    assert load_benchmark("bright", "biology", dataset_dir=root).excluded == {"0": {"b1"}}


def test_names_and_offline_errors(fake_hub):
    with pytest.raises(ValueError, match="unknown benchmark family 'beer'; valid: beir, msmarco"):
        plan_for("beer", "scifact", "test")
    with pytest.raises(ValueError, match="beir has no dataset 'scifakt'"):
        plan_for("beir", "scifakt", "test")
    with pytest.raises(ValueError, match="mldr has no split 'validation'"):
        plan_for("mldr", "en", "validation")
    with pytest.raises(ValueError, match="only passage/dev is on the hub"):
        plan_for("msmarco", "passage", "dl19")
    with pytest.raises(OSError, match="could not load BeIR/nfcorpus.*Pass a local folder"):
        load_benchmark("beir", "nfcorpus")
    assert plan_for("mteb", "anything", "test").judged[0].repo == "mteb/anything"
    assert plan_for("air-bench", "qa_wiki_en/default", "dev").queries[0].split == "queries_default_dev"
    assert isinstance(hub.FAMILIES, dict) and len(hub.FAMILIES) == 9
