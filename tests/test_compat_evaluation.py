"""FlagEmbedding's evaluation command lines through ``bgekit.evaluation.<family>``.

Each test makes the calls of one script of FlagEmbedding's ``examples/evaluation`` (same options; model names
point at the golden tiny checkpoints, ``--devices cuda:N`` becomes cpu and is checked to be refused; data is a
small SciFact slice or tiny folders written here; hub families read bgekit's fake hub of tests/test_eval_hub.py).
The numbers in the files are checked against an independent computation: brute-force dense scores from the
FlagEmbedding-named classes, bgekit.eval's own metrics, the reranker's compute_score.
"""
import json
import os
import sys
import types

import numpy as np
import pytest

from bgekit.compat.embedder import FlagAutoModel
from bgekit.compat.reranker import FlagAutoReranker
from bgekit.eval.metrics import evaluate_run, qa_recall
from bgekit.evaluation import instructions
from bgekit.evaluation.cli import main, parse
from golden import GOLDEN
from test_eval_hub import fake_hub  # noqa: F401  (the fixture is used by name)

pytestmark = pytest.mark.usefixtures("one_thread")

BERT = str(GOLDEN / "models" / "bert-embedder")
DECODER = str(GOLDEN / "models" / "decoder-embedder")
M3 = str(GOLDEN / "models" / "m3")
RERANKER = str(GOLDEN / "models" / "bert-reranker")
SCIFACT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scifact")

# Every field of FlagEmbedding 1.4.2's AbsEvalArgs / AbsEvalModelArgs (read from its source), with one value each.
FLAG_EVAL_ARGS = {"eval_name": "x", "dataset_dir": "d", "force_redownload": "False", "dataset_names": "a", "splits": "test",
                  "corpus_embd_save_dir": "e", "output_dir": "o", "search_top_k": "5", "rerank_top_k": "3",
                  "cache_path": "c", "token": "t", "overwrite": "False", "ignore_identical_ids": "True", "k_values": "10",
                  "eval_output_method": "json", "eval_output_path": "p", "eval_metrics": "ndcg_at_10"}
FLAG_MODEL_ARGS = {"embedder_name_or_path": BERT, "embedder_model_class": "encoder-only-base", "normalize_embeddings": "True",
                   "pooling_method": "cls", "use_fp16": "False", "devices": "cpu", "query_instruction_for_retrieval": "q",
                   "query_instruction_format_for_retrieval": "{}{}", "examples_for_task": "[]",
                   "examples_instruction_format": "{}{}", "trust_remote_code": "False", "reranker_name_or_path": "r",
                   "reranker_model_class": "encoder-only-base", "reranker_peft_path": "p", "use_bf16": "False",
                   "query_instruction_for_rerank": "q", "query_instruction_format_for_rerank": "{}{}",
                   "passage_instruction_for_rerank": "p", "passage_instruction_format_for_rerank": "{}{}",
                   "cache_dir": "c", "domain_for_pseudo_moe": "general", "embedder_batch_size": "2",
                   "reranker_batch_size": "2", "embedder_query_max_length": "8", "embedder_passage_max_length": "8",
                   "truncate_dim": "4", "reranker_query_max_length": "8", "reranker_max_length": "16", "normalize": "True",
                   "prompt": "p", "cutoff_layers": "3", "compress_ratio": "2", "compress_layers": "3"}
FAMILY_EXTRA = {"beir": {"use_special_instructions": "True"}, "bright": {"task_type": "short", "use_special_instructions": "True"},
                "mteb": {"languages": "eng", "tasks": "T", "task_types": "Retrieval", "use_special_instructions": "False",
                         "examples_path": "e"}}
AIR_EVAL_ARGS = {"benchmark_version": "AIR-Bench_24.05", "task_types": "qa", "domains": "arxiv", "languages": "en",
                 "splits": "dev", "output_dir": "o", "search_top_k": "5", "rerank_top_k": "3", "cache_dir": "c",
                 "bm25_tmp_dir": "b", "remove_bm25_tmp_dir": "True", "overwrite": "False"}


def _argv(options: dict) -> list:
    return [x for k, v in options.items() for x in (f"--{k}", *str(v).split())]


def _write_custom(folder, docs, queries, qrels, split="test"):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "corpus.jsonl"), "w") as f:
        f.writelines(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in docs)
    with open(os.path.join(folder, f"{split}_queries.jsonl"), "w") as f:
        f.writelines(json.dumps({"id": q, "text": t}) + "\n" for q, t in queries.items())
    with open(os.path.join(folder, f"{split}_qrels.jsonl"), "w") as f:
        f.writelines(json.dumps({"qid": q, "docid": d, "relevance": 1}) + "\n" for q, ds in qrels.items() for d in ds)


@pytest.fixture(scope="module")
def scifact_slice(tmp_path_factory):
    """12 SciFact test queries, their relevant abstracts and 28 others, in FlagEmbedding's saved layout."""
    qrels = {}
    with open(os.path.join(SCIFACT, "qrels", "test.tsv")) as f:
        next(f)
        for line in f:
            q, d, _ = line.rstrip("\n").split("\t")
            qrels.setdefault(q, []).append(d)
    chosen = dict(list(qrels.items())[:12])
    wanted = {d for ds in chosen.values() for d in ds}
    docs, queries = [], {}
    with open(os.path.join(SCIFACT, "corpus.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] in wanted or len(docs) < 28:
                docs.append((row["_id"], row["title"], row["text"][:300]))
    with open(os.path.join(SCIFACT, "queries.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row["_id"] in chosen:
                queries[row["_id"]] = row["text"]
    root = tmp_path_factory.mktemp("beir") / "data"
    _write_custom(str(root / "scifact"), docs, queries, chosen)
    # a second, tiny dataset whose query 'n2' has the id of a document (BEIR's self-hit case)
    _write_custom(str(root / "nfcorpus"), [("n1", "", "vitamin d and bones"), ("n2", "", "sugar and teeth"),
                                           ("n3", "", "sleep helps memory")],
                  {"q1": "does vitamin d help bones", "n2": "sugar teeth"}, {"q1": ["n1"], "n2": ["n2", "n3"]})
    # BEIR's cqadupstack: one folder per forum, scored per forum and averaged
    _write_custom(str(root / "cqadupstack" / "gis"), [("g1", "", "map projections"), ("g2", "", "raster tiles")],
                  {"c1": "which projection for maps", "c2": "tiles"}, {"c1": ["g1"], "c2": ["g1"]})
    _write_custom(str(root / "cqadupstack" / "tex"), [("t1", "", "latex tables"), ("t2", "", "bibtex styles")],
                  {"c3": "bibliography style"}, {"c3": ["t2"]})
    return str(root)


def _dense_top(embedder, docs, queries, k):
    """Brute force: {qid: {docid: score}} of the k best inner products (what the search must return)."""
    d = np.asarray(embedder.encode_corpus([x for _, x in docs]))
    q = np.asarray(embedder.encode_queries(list(queries.values())))
    out = {}
    for qid, row in zip(queries, q @ d.T):
        order = np.argsort(-row)[:k]
        out[qid] = {docs[i][0]: float(row[i]) for i in order}
    return out


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_every_flagembedding_evaluation_argument_is_accepted():
    for family in ("beir", "msmarco", "miracl", "mldr", "mkqa", "bright", "custom", "mteb"):
        eval_args, model_args = parse(family, _argv({**FLAG_EVAL_ARGS, **FAMILY_EXTRA.get(family, {}), **FLAG_MODEL_ARGS}))
        assert eval_args.k_values == [10] and eval_args.dataset_names == ["a"] and model_args.cutoff_layers == [3]
        assert model_args.compress_layers == [3] and model_args.devices == ["cpu"] and eval_args.ignore_identical_ids
    model_only = {k: v for k, v in FLAG_MODEL_ARGS.items() if k not in ("cache_dir", "domain_for_pseudo_moe")}
    eval_args, model_args = parse("air_bench", _argv({**AIR_EVAL_ARGS, **model_only, "model_cache_dir": "m"}))
    assert eval_args.task_types == ["qa"] and model_args.cache_dir == "m" and model_args.pooling_method == "cls"
    eval_args, model_args = parse("beir", ["--embedder_name_or_path", BERT])   # FlagEmbedding's defaults
    assert (eval_args.output_dir, eval_args.search_top_k, eval_args.k_values, eval_args.eval_metrics,
            eval_args.ignore_identical_ids) == ("./search_results", 1000, [1, 3, 5, 10, 100, 1000],
                                                ["ndcg_at_10", "recall_at_10"], False)
    assert (model_args.embedder_batch_size, model_args.use_fp16, model_args.query_instruction_format_for_retrieval) == (3000, True, "{}{}")
    assert parse("bright", ["--embedder_name_or_path", BERT])[0].use_special_instructions is True
    with pytest.raises(ValueError, match="unknown option"):
        parse("beir", ["--embedder_name_or_path", BERT, "--no_such_option", "1"])


def _beir_script(root, out, devices=("cpu",)):
    """examples/evaluation/beir/eval_beir.sh, with local paths and the golden checkpoints."""
    return ["--eval_name", "beir", "--dataset_dir", root, "--dataset_names", "scifact", "nfcorpus", "cqadupstack",
            "--splits", "test", "dev",
            "--corpus_embd_save_dir", f"{out}/corpus_embd", "--output_dir", f"{out}/search_results",
            "--search_top_k", "1000", "--rerank_top_k", "100", "--cache_path", f"{out}/cache", "--overwrite", "False",
            "--k_values", "10", "100", "--eval_output_method", "markdown", "--eval_output_path", f"{out}/beir_eval_results.md",
            "--eval_metrics", "ndcg_at_10", "recall_at_100", "--ignore_identical_ids", "True",
            "--embedder_name_or_path", BERT, "--reranker_name_or_path", RERANKER, "--devices", *devices,
            "--cache_dir", f"{out}/models", "--reranker_max_length", "512"]  # 1024 in the script: beyond this tiny model


def test_eval_beir_script(scifact_slice, tmp_path, capsys):
    out = str(tmp_path)
    assert main("beir", _beir_script(scifact_slice, out, devices=("cuda:0", "cuda:1"))) == 2
    assert "--devices cuda:0: this machine has no such device" in capsys.readouterr().err
    assert not os.path.exists(f"{out}/search_results")                     # refused before any work

    assert main("beir", _beir_script(scifact_slice, out)) == 0
    first = f"{out}/search_results/bert-embedder/NoReranker"
    saved = _read(f"{first}/scifact-test.json")
    assert {k: saved[k] for k in ("eval_name", "model_name", "reranker_name", "split", "dataset_name")} == \
        {"eval_name": "beir", "model_name": "bert-embedder", "reranker_name": "NoReranker", "split": "test", "dataset_name": "scifact"}
    assert not os.path.exists(f"{first}/scifact-dev.json")                 # no dev split: skipped, as FlagEmbedding

    embedder = FlagAutoModel.from_finetuned(BERT, devices="cpu", use_fp16=False, query_instruction_format="{}{}")
    folder = os.path.join(scifact_slice, "scifact")
    docs = [(r["id"], f"{r['title']} {r['text']}".strip()) for r in map(json.loads, open(f"{folder}/corpus.jsonl"))]
    queries = {r["id"]: r["text"] for r in map(json.loads, open(f"{folder}/test_queries.jsonl"))}
    expected = _dense_top(embedder, docs, queries, len(docs))
    for qid, hits in saved["search_results"].items():
        assert list(hits) == list(expected[qid])
        np.testing.assert_allclose(list(hits.values()), list(expected[qid].values()), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.load(f"{out}/corpus_embd/bert-embedder/scifact/doc.npy"),
                               embedder.encode_corpus([x for _, x in docs]), rtol=1e-5, atol=1e-6)

    metrics = _read(f"{first}/EVAL/eval_results.json")
    assert set(metrics) == {"scifact-test", "nfcorpus-test", "cqadupstack-test"}
    forums = []
    for forum in ("gis", "tex"):
        saved_forum = _read(f"{first}/cqadupstack-{forum}-test.json")
        assert (saved_forum["dataset_name"], saved_forum["sub_dataset_name"]) == ("cqadupstack", forum)
        judged = {}
        for r in map(json.loads, open(os.path.join(scifact_slice, "cqadupstack", forum, "test_qrels.jsonl"))):
            judged.setdefault(r["qid"], {})[r["docid"]] = 1
        forums.append(evaluate_run(judged, saved_forum["search_results"], [10], ["ndcg"])["ndcg@10"])
        assert os.path.isfile(f"{out}/corpus_embd/bert-embedder/cqadupstack/{forum}/doc.npy")
    assert metrics["cqadupstack-test"]["ndcg_at_10"] == pytest.approx(sum(forums) / 2, abs=1e-5)
    qrels = {}
    for r in map(json.loads, open(f"{folder}/test_qrels.jsonl")):
        qrels.setdefault(r["qid"], {})[r["docid"]] = 1
    independent = evaluate_run(qrels, saved["search_results"], [10, 100], ["ndcg", "recall", "mrr"])
    for ours, theirs in (("ndcg_at_10", "ndcg@10"), ("recall_at_100", "recall@100"), ("mrr_at_10", "mrr@10")):
        assert metrics["scifact-test"][ours] == pytest.approx(independent[theirs], abs=1e-5)
    assert "n2" not in _read(f"{first}/nfcorpus-test.json")["search_results"]["n2"]   # --ignore_identical_ids True

    reranked = _read(f"{out}/search_results/bert-embedder/bert-reranker/scifact-test.json")["search_results"]
    reranker = FlagAutoReranker.from_finetuned(RERANKER, devices="cpu", max_length=512)
    text = dict(docs)
    qid = next(iter(reranked))
    pairs = [[queries[qid], text[d]] for d in reranked[qid]]
    np.testing.assert_allclose(list(reranked[qid].values()), reranker.compute_score(pairs), rtol=1e-5, atol=1e-5)
    assert len(reranked[qid]) == len(docs)                                  # rerank_top_k 100 > corpus

    table = open(f"{out}/beir_eval_results.md").read()
    assert table.startswith("## ndcg_at_10\n") and "## recall_at_100" in table
    assert "| Model | Reranker | average | cqadupstack-test | nfcorpus-test | scifact-test |" in table
    row = next(line for line in table.splitlines() if line.startswith("| bert-embedder | NoReranker |"))
    assert f"{metrics['scifact-test']['ndcg_at_10'] * 100:.3f}" in row

    # --overwrite False: the saved results are reused, not recomputed
    before = os.path.getmtime(f"{first}/scifact-test.json")
    assert main("beir", _beir_script(scifact_slice, out)) == 0
    assert os.path.getmtime(f"{first}/scifact-test.json") == before


def test_bad_options_are_refused_before_work(scifact_slice, tmp_path, capsys):
    base = ["--dataset_dir", scifact_slice, "--dataset_names", "scifact", "--output_dir", str(tmp_path / "o"),
            "--embedder_name_or_path", BERT, "--devices", "cpu"]
    cases = [
        (["--k_values", "10", "--eval_metrics", "ndcg_at_5"], "--eval_metrics ndcg_at_5: not computed with --k_values 10"),
        (["--reranker_name_or_path", RERANKER, "--cutoff_layers", "3"], "--cutoff_layers [3] does not apply to the reranker"),
        (["--examples_for_task", '[{"instruct": "i", "query": "q", "response": "r"}]'], "--examples_for_task"),
        (["--dataset_names", "no-such-set"], "--dataset_names no-such-set: not in beir"),
    ]
    for extra, message in cases:
        assert main("beir", base + extra) == 2
        assert message in capsys.readouterr().err
    assert main("bright", base[:4] + base[6:] + ["--task_type", "long"]) == 2
    assert "--task_type long" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_corpus_embeddings_of_another_corpus_are_refused(scifact_slice, tmp_path, capsys):
    os.makedirs(tmp_path / "e" / "bert-embedder" / "nfcorpus")
    np.save(tmp_path / "e" / "bert-embedder" / "nfcorpus" / "doc.npy", np.zeros((7, 32), dtype=np.float32))
    argv = ["--dataset_dir", scifact_slice, "--dataset_names", "nfcorpus", "--corpus_embd_save_dir", str(tmp_path / "e"),
            "--output_dir", str(tmp_path / "o"), "--eval_output_path", str(tmp_path / "r.md"), "--embedder_name_or_path", BERT]
    assert main("beir", argv) == 2
    assert "holds 7 embeddings but the corpus of nfcorpus has 3 documents; pass --overwrite True" in capsys.readouterr().err
    assert main("beir", argv + ["--overwrite", "True"]) == 0
    assert np.load(tmp_path / "e" / "bert-embedder" / "nfcorpus" / "doc.npy").shape[0] == 3


@pytest.mark.parametrize("family, names, split, metrics, k", [
    ("msmarco", ["passage"], "dev", ["ndcg_at_10", "recall_at_100"], ["10", "100"]),   # eval_msmarco.sh
    ("mldr", ["hi"], "test", ["ndcg_at_10"], ["10", "100"]),                           # eval_mldr.sh
])
def test_eval_scripts_on_local_folders(tmp_path, family, names, split, metrics, k):
    root = tmp_path / "data"
    for name in names:
        _write_custom(str(root / name), [("a", "", "red apples"), ("b", "", "green pears"), ("c", "", "blue sky")],
                      {"1": "apples", "2": "the sky"}, {"1": ["a"], "2": ["c"]}, split=split)
    argv = ["--eval_name", family, "--dataset_dir", str(root), "--dataset_names", *names, "--splits", split,
            "--corpus_embd_save_dir", str(tmp_path / "e"), "--output_dir", str(tmp_path / "sr"),
            "--search_top_k", "1000", "--rerank_top_k", "100", "--overwrite", "True", "--k_values", *k,
            "--eval_output_method", "markdown", "--eval_output_path", str(tmp_path / "r.md"), "--eval_metrics", *metrics,
            "--embedder_name_or_path", M3 if family == "mldr" else BERT, "--devices", "cpu",
            "--embedder_passage_max_length", "512"]  # 8192 in eval_mldr.sh: beyond the tiny m3
    assert main(family, argv) == 0
    model = "m3" if family == "mldr" else "bert-embedder"
    result = _read(tmp_path / "sr" / model / "NoReranker" / "EVAL" / "eval_results.json")
    assert set(result) == {f"{n}-{split}" for n in names} and f"ndcg_at_{k[0]}" in result[f"{names[0]}-{split}"]
    assert (tmp_path / "e" / model / names[0] / "doc.npy").is_file()
    assert f"## {metrics[0]}" in (tmp_path / "r.md").read_text()


def test_eval_miracl_script_downloads_through_the_hub(fake_hub, tmp_path):   # noqa: F811
    """eval_miracl.sh with the hub faked: the dataset is read from the hub, saved under dataset_dir, scored."""
    argv = ["--eval_name", "miracl", "--dataset_dir", str(tmp_path / "data"), "--dataset_names", "sw", "--splits", "dev",
            "--corpus_embd_save_dir", str(tmp_path / "e"), "--output_dir", str(tmp_path / "sr"), "--cache_path", str(tmp_path / "c"),
            "--overwrite", "False", "--k_values", "10", "100", "--eval_output_path", str(tmp_path / "miracl.md"),
            "--eval_metrics", "ndcg_at_10", "recall_at_100", "--embedder_name_or_path", M3, "--reranker_name_or_path", RERANKER,
            "--devices", "cpu", "--reranker_max_length", "512"]  # scripts: 1024, beyond the tiny model
    assert main("miracl", argv) == 0
    assert ("miracl/miracl-corpus", "sw", "train") in fake_hub
    assert (tmp_path / "data" / "sw" / "dev_qrels.jsonl").is_file()           # saved for the next run
    result = _read(tmp_path / "sr" / "m3" / "bert-reranker" / "EVAL" / "eval_results.json")
    assert result["sw-dev"]["ndcg_at_10"] == 1.0                             # one document, and it is relevant


def test_eval_mkqa_script_scores_answers(fake_hub, tmp_path):   # noqa: F811
    argv = ["--eval_name", "mkqa", "--dataset_dir", str(tmp_path / "data"), "--dataset_names", "en", "--splits", "test",
            "--corpus_embd_save_dir", str(tmp_path / "e"), "--output_dir", str(tmp_path / "sr"), "--overwrite", "False",
            "--k_values", "1", "--eval_output_path", str(tmp_path / "mkqa.md"), "--eval_metrics", "qa_recall_at_1",
            "--embedder_name_or_path", BERT, "--devices", "cpu", "--search_top_k", "1"]
    assert main("mkqa", argv) == 0
    saved = _read(tmp_path / "sr" / "bert-embedder" / "NoReranker" / "en-test.json")["search_results"]
    texts = {"n1": "France Its capital is Paris.", "n2": "Rome is in Italy."}
    expected = qa_recall({q: [texts[d] for d in r] for q, r in saved.items()}, {"m1": ["Paris"]}, [1])["qa_recall@1"]
    result = _read(tmp_path / "sr" / "bert-embedder" / "NoReranker" / "EVAL" / "eval_results.json")
    assert result == {"en-test": {"qa_recall_at_1": expected}}
    assert (tmp_path / "e" / "bert-embedder" / "doc.npy").is_file()         # one corpus for every language
    assert "qa_recall_at_1" in (tmp_path / "mkqa.md").read_text()


def test_eval_bright_short_script(fake_hub, tmp_path):   # noqa: F811
    """eval_bright_short.sh: decoder-only embedder, instruction format, last-token pooling, per-dataset instruction."""
    from bgekit.evaluation.bright import BrightEvalRunner

    argv = ["--task_type", "short", "--use_special_instructions", "True", "--eval_name", "bright_short",
            "--dataset_dir", str(tmp_path / "data"), "--dataset_names", "biology", "--splits", "examples",
            "--corpus_embd_save_dir", str(tmp_path / "e"), "--output_dir", str(tmp_path / "sr" / "examples"),
            "--search_top_k", "2000", "--overwrite", "False", "--k_values", "1", "10", "100",
            "--eval_output_method", "markdown", "--eval_output_path", str(tmp_path / "r.md"),
            "--eval_metrics", "ndcg_at_10", "recall_at_10", "recall_at_100",
            "--embedder_name_or_path", DECODER, "--embedder_model_class", "decoder-only-base",
            "--query_instruction_format_for_retrieval", "Instruct: {}\\nQuery: {}", "--pooling_method", "last_token",
            "--devices", "cpu", "--embedder_batch_size", "2", "--embedder_query_max_length", "4096",
            "--embedder_passage_max_length", "4096"]  # 8192 in the script: the tiny decoder has 4096 positions
    runner = BrightEvalRunner(*parse("bright", argv))
    runner.run()
    emb = runner.embedder
    assert emb.query_instruction_for_retrieval == instructions.BRIGHT_SHORT["biology"]
    assert emb.query_instruction_format == "Instruct: {}\nQuery: {}" and emb.pooling_method == "last_token"
    hits = _read(tmp_path / "sr" / "examples" / "decoder-embedder" / "NoReranker" / "biology-examples.json")["search_results"]["0"]
    assert list(hits) == ["b2"]                                               # b1 is an excluded id
    q = emb.encode_queries(["what is dna"])[0]
    d = emb.encode_corpus(["genes"])[0]
    assert hits["b2"] == pytest.approx(float(q @ d), abs=1e-5)


def test_custom_evaluation_on_a_folder(tmp_path):
    """The custom-dataset command of examples/evaluation/README.md (its options; data of the same layout)."""
    _write_custom(str(tmp_path / "mine"), [("a", "", "red apples"), ("b", "", "green pears"), ("c", "", "blue sky")],
                  {"1": "apples", "2": "sky"}, {"1": ["a"], "2": ["c", "b"]})
    out = tmp_path / "your_data_name"
    argv = ["--eval_name", "your_data_name", "--dataset_dir", str(tmp_path / "mine"), "--splits", "test",
            "--corpus_embd_save_dir", str(out / "corpus_embd"), "--output_dir", str(out / "search_results"),
            "--search_top_k", "1000", "--rerank_top_k", "100", "--cache_path", str(tmp_path / "cache"), "--overwrite", "False",
            "--k_values", "10", "100", "--eval_output_method", "markdown", "--eval_output_path", str(out / "eval_results.md"),
            "--eval_metrics", "ndcg_at_10", "recall_at_100", "--embedder_name_or_path", M3, "--reranker_name_or_path", RERANKER,
            "--devices", "cpu", "--cache_dir", str(tmp_path / "models"), "--reranker_query_max_length", "512",
            "--reranker_max_length", "512"]  # 1024 in the README: beyond the tiny reranker
    assert main("custom", argv) == 0
    saved = _read(out / "search_results" / "m3" / "NoReranker" / "test.json")
    assert saved["dataset_name"] is None and saved["eval_name"] == "your_data_name"
    assert (out / "corpus_embd" / "m3" / "doc.npy").is_file()
    result = _read(out / "search_results" / "m3" / "bert-reranker" / "EVAL" / "eval_results.json")
    assert set(result) == {"test"} and result["test"]["recall_at_100"] == 1.0   # every document is retrieved
    assert "| m3 | bert-reranker |" in (out / "eval_results.md").read_text()


def test_eval_mteb_script(tmp_path, monkeypatch):
    """eval_mteb.sh: tasks from mteb.get_tasks (mteb's offline mock tasks here), per-task JSON and the summary."""
    mteb = pytest.importorskip("mteb")
    mock_tasks = pytest.importorskip("mteb.mocks.mock_tasks")
    asked = {}

    def get_tasks(tasks=None, languages=None, task_types=None):
        asked.update(tasks=tasks, languages=languages, task_types=task_types)
        return [mock_tasks.MockRetrievalTask(), mock_tasks.MockSTSTask()]

    monkeypatch.setattr(mteb, "get_tasks", get_tasks)
    argv = ["--eval_name", "mteb", "--output_dir", str(tmp_path / "sr"), "--languages", "eng", "--tasks", "NFCorpus",
            "BiorxivClusteringS2S", "SciDocsRR", "--eval_output_path", str(tmp_path / "mteb_eval_results.json"),
            "--embedder_name_or_path", BERT, "--devices", "cpu"]
    assert main("mteb", argv) == 0
    assert asked == {"tasks": ["NFCorpus", "BiorxivClusteringS2S", "SciDocsRR"], "languages": ["eng"], "task_types": None}
    folder = tmp_path / "sr" / "bert-embedder" / "no_model_name_available" / "no_revision_available"
    task = _read(folder / "MockRetrievalTask.json")
    summary = _read(tmp_path / "mteb_eval_results.json")
    score = next(e for e in task["scores"]["test"] if e["hf_subset"] == "default")["main_score"]
    assert summary["Retrieval"]["MockRetrievalTask"] == round(score * 100, 2)
    assert summary["Avg"] == round((summary["Retrieval"]["Avg"] + summary["STS"]["Avg"]) / 2, 2)


def test_eval_air_bench_script(tmp_path, monkeypatch, capsys):
    """eval_air_bench.sh with AIR-Bench's dataset table and the hub faked; test judgements are private: refused."""
    table = types.ModuleType("air_benchmark.tasks.tasks")
    table.BenchmarkTable = {"AIR-Bench_24.05": {"qa": {"arxiv": {"en": {"default": {"splits": ["dev", "test"]}}}},
                                                "long-doc": {"arxiv": {"en": {"gpt3": {"splits": ["test"]}}}}}}
    monkeypatch.setitem(sys.modules, "air_benchmark.tasks.tasks", table)
    repo, version = "AIR-Bench/qa_arxiv_en", "AIR-Bench_24.05"
    rows = {(repo, version, "corpus_default"): [{"id": "p1", "text": "transformers use attention"},
                                                {"id": "p2", "text": "cats sleep a lot"}],
            (repo, version, "queries_default_dev"): [{"id": "q1", "text": "what is attention"}],
            (repo, version, "qrels_default_dev"): [{"qid": "q1", "docid": "p1", "relevance": 1}]}
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(
        load_dataset=lambda r, c=None, split=None, cache_dir=None: list(rows[(r, c, split)])))
    argv = ["--benchmark_version", version, "--task_types", "qa", "long-doc", "--domains", "arxiv", "--languages", "en",
            "--splits", "dev", "test", "--output_dir", str(tmp_path / "sr"), "--search_top_k", "1000", "--rerank_top_k", "100",
            "--cache_dir", str(tmp_path / "c"), "--overwrite", "False", "--embedder_name_or_path", M3,
            "--reranker_name_or_path", RERANKER, "--devices", "cpu", "--model_cache_dir", str(tmp_path / "m"),
            "--reranker_max_length", "512"]  # 1024 in the script: beyond the tiny reranker
    assert main("air_bench", argv) == 2
    assert "--splits test: AIR-Bench keeps its test judgements private" in capsys.readouterr().err
    argv[argv.index("test")] = "dev"
    assert main("air_bench", argv) == 0
    saved = _read(tmp_path / "sr" / "m3" / "NoReranker" / "qa" / "arxiv" / "en_default_dev.json")
    assert saved["benchmark_version"] == version and set(saved["search_results"]["q1"]) == {"p1", "p2"}
    reranked = _read(tmp_path / "sr" / "m3" / "bert-reranker" / "qa" / "arxiv" / "en_default_dev.json")["search_results"]
    score = FlagAutoReranker.from_finetuned(RERANKER, devices="cpu").compute_score([["what is attention", "transformers use attention"]])
    assert reranked["q1"]["p1"] == pytest.approx(score[0], abs=1e-5)
    metrics = _read(tmp_path / "sr" / "m3" / "NoReranker" / "EVAL" / "eval_results.json")
    assert set(metrics) == {"qa_arxiv_en_default-dev"}


@pytest.mark.slow
def test_python_m_runs_the_module(scifact_slice, tmp_path):
    """One real ``python -m bgekit.evaluation.custom`` process (the others run main() in-process; the default run
    has one real process already, tests/test_compat_finetune.py::test_torchrun_runs_the_module)."""
    import subprocess

    argv = [sys.executable, "-m", "bgekit.evaluation.custom", "--dataset_dir", os.path.join(scifact_slice, "nfcorpus"),
            "--output_dir", str(tmp_path / "sr"), "--eval_output_path", str(tmp_path / "r.md"), "--k_values", "1",
            "--eval_metrics", "ndcg_at_1", "--embedder_name_or_path", BERT]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## ndcg_at_1" in (tmp_path / "r.md").read_text()


def test_model_options_reach_the_models(tmp_path):
    """Model options are honoured: the saved scores equal those of the classes built with the same options."""
    layerwise = str(GOLDEN / "models" / "layerwise-reranker")
    _write_custom(str(tmp_path / "d"), [("a", "t", "red apples"), ("b", "", "green pears"), ("c", "", "blue sky")],
                  {"1": "apples", "2": "sky"}, {"1": ["a"], "2": ["c"]})
    argv = ["--dataset_dir", str(tmp_path / "d"), "--output_dir", str(tmp_path / "sr"), "--eval_output_path",
            str(tmp_path / "r.json"), "--eval_output_method", "json", "--corpus_embd_save_dir", str(tmp_path / "e"),
            "--k_values", "1", "--eval_metrics",
            "ndcg_at_1", "--embedder_name_or_path", BERT, "--truncate_dim", "16", "--normalize_embeddings", "False",
            "--query_instruction_for_retrieval", "Find: ", "--query_instruction_format_for_retrieval", "<{}>{}",
            "--embedder_query_max_length", "16", "--embedder_batch_size", "2", "--use_fp16", "False",
            "--reranker_name_or_path", layerwise, "--cutoff_layers", "2", "--normalize", "True",
            "--query_instruction_for_rerank", "Q: ", "--passage_instruction_for_rerank", "P: ", "--reranker_max_length", "64",
            "--reranker_batch_size", "2", "--rerank_top_k", "2"]
    assert main("custom", argv) == 0
    summary = _read(tmp_path / "r.json")                                    # --eval_output_method json
    assert set(summary["bert-embedder"]) == {"NoReranker", "layerwise-reranker"}
    assert summary["bert-embedder"]["NoReranker"] == _read(tmp_path / "sr" / "bert-embedder" / "NoReranker" / "EVAL" / "eval_results.json")
    emb = FlagAutoModel.from_finetuned(BERT, devices="cpu", use_fp16=False, truncate_dim=16, normalize_embeddings=False,
                                       query_instruction_for_retrieval="Find: ", query_instruction_format="<{}>{}",
                                       query_max_length=16)
    docs = [("a", "t red apples"), ("b", "green pears"), ("c", "blue sky")]
    assert np.load(tmp_path / "e" / "bert-embedder" / "doc.npy").shape == (3, 16)
    first = _read(tmp_path / "sr" / "bert-embedder" / "NoReranker" / "test.json")["search_results"]
    expected = _dense_top(emb, docs, {"1": "apples", "2": "sky"}, 3)
    for qid in first:
        np.testing.assert_allclose([first[qid][d] for d in expected[qid]], list(expected[qid].values()), rtol=1e-5, atol=1e-5)
    reranker = FlagAutoReranker.from_finetuned(layerwise, devices="cpu", cutoff_layers=[2], normalize=True,
                                               query_instruction_for_rerank="Q: ", passage_instruction_for_rerank="P: ",
                                               max_length=64, trust_remote_code=False)
    reranked = _read(tmp_path / "sr" / "bert-embedder" / "layerwise-reranker" / "test.json")["search_results"]
    text = dict(docs)
    for qid, hits in reranked.items():
        assert len(hits) == 2                                               # --rerank_top_k 2
        query = {"1": "apples", "2": "sky"}[qid]
        np.testing.assert_allclose(list(hits.values()), reranker.compute_score([[query, text[d]] for d in hits]), atol=1e-5)
        assert all(0.0 < v < 1.0 for v in hits.values())                    # --normalize True: sigmoid scores


def test_force_redownload_reads_the_hub_again(fake_hub, tmp_path):   # noqa: F811
    argv = ["--dataset_dir", str(tmp_path / "data"), "--dataset_names", "sw", "--splits", "dev", "--output_dir",
            str(tmp_path / "sr"), "--eval_output_path", str(tmp_path / "r.md"), "--embedder_name_or_path", BERT,
            "--k_values", "1", "--eval_metrics", "ndcg_at_1", "--overwrite", "True"]
    assert main("miracl", argv) == 0
    calls = len(fake_hub)
    assert main("miracl", argv) == 0 and len(fake_hub) == calls             # saved copy reused
    assert main("miracl", argv + ["--force_redownload", "True"]) == 0 and len(fake_hub) > calls


@pytest.mark.parametrize("extra, message", [
    (["--use_special_instructions", "True"], "bgekit has no table of MTEB task instructions"),
    (["--examples_path", "examples"], "FlagEmbedding reads these example files but never gives them to the model"),
    (["--reranker_name_or_path", RERANKER], "MTEB scores the embedder alone"),
])
def test_mteb_options_flagembedding_never_uses_are_refused(tmp_path, capsys, extra, message):
    argv = ["--output_dir", str(tmp_path / "sr"), "--tasks", "NFCorpus", "--embedder_name_or_path", BERT] + extra
    assert main("mteb", argv) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "sr").exists()


def test_icl_and_llm_reranker_options_reach_the_models(tmp_path):
    """--examples_for_task (a JSON file) / --examples_instruction_format reach an ICL embedder; --reranker_peft_path
    and --prompt reach an LLM reranker (the adapter changes the scores, and they equal the class's own)."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    llm = str(GOLDEN / "models" / "llm-reranker")
    torch.manual_seed(0)
    adapter = get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(llm),
                             LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter.save_pretrained(str(tmp_path / "adapter"))
    examples = [{"instruct": "Find the fruit.", "query": "apples", "response": "red apples"}]
    (tmp_path / "examples.json").write_text(json.dumps(examples))
    _write_custom(str(tmp_path / "d"), [("a", "", "red apples"), ("b", "", "green pears")], {"1": "pears"}, {"1": ["b"]})
    argv = ["--dataset_dir", str(tmp_path / "d"), "--output_dir", str(tmp_path / "sr"), "--eval_output_path",
            str(tmp_path / "r.md"), "--k_values", "1", "--eval_metrics", "ndcg_at_1", "--embedder_name_or_path", DECODER,
            "--embedder_model_class", "decoder-only-icl", "--examples_for_task", str(tmp_path / "examples.json"),
            "--examples_instruction_format", "<instruct>{}\\n<query>{}\\n<response>{}",
            "--query_instruction_for_retrieval", "Find the fruit.", "--reranker_name_or_path", llm,
            "--reranker_peft_path", str(tmp_path / "adapter"), "--prompt", "Is it relevant?", "--reranker_max_length", "64"]
    assert main("custom", argv) == 0
    icl = FlagAutoModel.from_finetuned(DECODER, model_class="decoder-only-icl", devices="cpu", use_fp16=False,
                                       examples_for_task=examples, examples_instruction_format="<instruct>{}\n<query>{}\n<response>{}",
                                       query_instruction_for_retrieval="Find the fruit.", query_instruction_format="{}{}",
                                       trust_remote_code=False)
    first = _read(tmp_path / "sr" / "decoder-embedder" / "NoReranker" / "test.json")["search_results"]["1"]
    expected = _dense_top(icl, [("a", "red apples"), ("b", "green pears")], {"1": "pears"}, 2)["1"]
    np.testing.assert_allclose([first[d] for d in expected], list(expected.values()), rtol=1e-4, atol=1e-4)
    kwargs = dict(model_class="decoder-only-base", devices="cpu", prompt="Is it relevant?", max_length=64,
                  query_instruction_for_rerank=None, passage_instruction_for_rerank=None, trust_remote_code=False)
    with_adapter = FlagAutoReranker.from_finetuned(llm, peft_path=str(tmp_path / "adapter"), **kwargs)
    reranked = _read(tmp_path / "sr" / "decoder-embedder" / "llm-reranker" / "test.json")["search_results"]["1"]
    pairs = [["pears", {"a": "red apples", "b": "green pears"}[d]] for d in reranked]
    np.testing.assert_allclose(list(reranked.values()), with_adapter.compute_score(pairs), atol=1e-4)
    plain = FlagAutoReranker.from_finetuned(llm, **kwargs).compute_score(pairs)
    assert not np.allclose(list(reranked.values()), plain, atol=1e-3)       # the adapter was applied


def test_a_download_that_cannot_happen_is_a_clear_error(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    argv = ["--dataset_names", "passage", "--splits", "dev", "--output_dir", str(tmp_path / "sr"),
            "--eval_output_path", str(tmp_path / "r.md"), "--embedder_name_or_path", BERT]
    assert main("msmarco", argv) == 5                                       # an I/O error (bgekit.errors)
    err = capsys.readouterr().err
    assert "could not load Tevatron/msmarco-passage-corpus" in err and "Pass a local folder" in err
