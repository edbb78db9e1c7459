"""Bad input to the `bgekit` command: every case is one line - the arguments, the exit code, a fragment of the
message on stderr (docs/errors.md lists the codes: 2 usage, 3 input, 4 model, 5 I/O, 6 missing package).

To add a case, add one line to CASES. ``{name}`` placeholders are the fixture files of tests/bad_input.py
(``{d}`` is a scratch folder). Each case must fail fast, print one or two lines (never a traceback) and name
the problem; code 0 lines are inputs that used to be refused and must work.
"""
import shlex

import pytest

from bad_input import make_files

pytestmark = pytest.mark.usefixtures("one_thread")

USAGE, INPUT, MODEL, IO, MISSING = 2, 3, 4, 5, 6

CASES = [
    # ---- options silently ignored before: now refused (usage)
    ("search panda --corpus {txt} --filter lang=de", USAGE, "--filter cannot apply without --index-dir"),
    ("search panda --corpus {txt} --mode sparse", USAGE, "--mode cannot apply without --index-dir"),
    ("search panda --corpus {txt} --colbert", USAGE, "--colbert cannot apply without --index-dir"),
    ("search panda --corpus {txt} --reranker {xlmr}", USAGE, "--reranker cannot apply without --index-dir"),
    ("search panda --index-dir {index} --corpus {txt}", USAGE, "--corpus cannot apply with --index-dir"),
    ("search panda --index-dir {index} --fusion rrf", USAGE, "--fusion cannot apply with --mode dense"),
    ("search panda --index-dir {index} --rerank-depth 5", USAGE, "--rerank-depth cannot apply without --reranker"),
    ("search panda --index-dir {index} --ef-search 64", USAGE, "--ef-search applies to HNSW indexes only; this one is 'Flat'"),
    ("index build --corpus {corpus} --index-dir {d}/ix-ef --model {bert} --ef-search 64", USAGE, "HNSW indexes only"),
    ("search panda --top-k -1", USAGE, "argument --top-k: must be a positive integer, got -1"),
    ("search panda --top-k 0", USAGE, "argument --top-k: must be a positive integer, got 0"),
    ("encode {txt} -o {d}/o.npy --batch-size 0 --model {bert}", USAGE, "argument --batch-size: must be a positive integer"),
    ("encode {txt} -o {d}/o.npy --max-length 0 --model {bert}", USAGE, "argument --max-length: must be a positive integer"),
    ("rerank {pairs} --model {xlmr} --max-length 0", USAGE, "argument --max-length: must be a positive integer"),
    ("eval beir --dataset-dir {beir} --batch-size 0", USAGE, "argument --batch-size: must be a positive integer"),
    ("index build --corpus {corpus} --index-dir {d}/ix-cd --model {m3} --colbert --dense-only", USAGE, "contradict"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --bm25-k1 -1", USAGE, "--bm25-k1) must be a number >= 0, got -1.0"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --bm25-b 1.5", USAGE, "--bm25-b) must be a number in 0..1, got 1.5"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --max-length 64", USAGE, "--max-length cannot apply with --retrieval bm25"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --index-factory HNSW32", USAGE, "--index-factory cannot apply with --retrieval bm25"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --device cpu", USAGE, "--device cannot apply with --retrieval bm25 and no --reranker"),
    ("eval beir --dataset-dir {beir} --model {bert} --bm25-k1 1.2", USAGE, "--bm25-k1 cannot apply with --retrieval dense"),
    ("eval beir --dataset-dir {beir} --model {bert} --fusion rrf", USAGE, "--fusion cannot apply with --retrieval dense"),
    ("eval beir --dataset-dir {beir} --model {m3} --retrieval sparse --index-factory HNSW32", USAGE, "no FAISS index"),
    ("eval beir --dataset-dir {beir} --model {bert} --rerank-top-k 10", USAGE, "--rerank-top-k cannot apply without --reranker"),
    ("eval beir --dataset-dir {beir} --model {bert} --rerank-interpolation 0.5", USAGE, "without --reranker"),
    ("eval report {results} --metrics ndcg@10,nope@3", USAGE, "--metrics: nope@3 not in these results; available:"),
    ("encode {txt} -o {d}/x.npy --sparse --model {m3}", USAGE, "give a path ending in .jsonl"),
    ("encode {txt} -o {d}/x.jsonl --model {bert}", USAGE, "give a path ending in .npy"),
    ("encode {txt} -o {d}/x.npy --field body --model {bert}", USAGE, "--field 'body' applies to .jsonl input only"),
    ("rerank {pairs} --model {xlmr} -o {d}/r.jsonl --json", USAGE, "--json cannot apply with --output"),
    ("rerank {pairs} --model {xlmr} --field body", USAGE, "--field cannot apply without --query"),
    ("index build --corpus {corpus} --index-dir {index} --model {bert}", USAGE, "or rebuild it with --overwrite"),
    ("index add --corpus {corpus} --index-dir {index}", USAGE, "replace them with upsert=True (bgekit index add --upsert)"),
    ("index delete --index-dir {index} --ids nope", USAGE, "bgekit index delete --ignore-missing, skips them"),
    ("eval beir --dataset-dir {beir} --model {bert} --index-factory Bogus12", USAGE, "--index-factory 'Bogus12'"),
    ("index build --corpus {corpus} --index-dir {d}/ix-fac --model {bert} --factory Bogus12", USAGE, "Bogus12"),
    # ---- devices: a clear error at construction naming the argument and what exists (usage)
    ("encode {txt} -o {d}/o.npy --model {bert} --device banana", USAGE, "device 'banana' (devices / --device) is not available"),
    ("encode {txt} -o {d}/o.npy --model {bert} --device cuda:7", USAGE, "available: cpu"),
    ("encode {txt} -o {d}/o.npy --model {bert} --device mps", USAGE, "device 'mps'"),
    ("search panda --model {bert} --device banana", USAGE, "device 'banana'"),
    ("rerank {pairs} --model {xlmr} --device banana", USAGE, "device 'banana'"),
    ("index build --corpus {corpus} --index-dir {d}/ix-dev --model {bert} --device banana", USAGE, "device 'banana'"),
    ("search panda --index-dir {index} --device banana", USAGE, "device 'banana'"),
    ("eval beir --dataset-dir {beir} --model {bert} --device banana", USAGE, "device 'banana'"),
    ("mine --input {pairs} --output {d}/m.jsonl --model {bert} --devices banana", USAGE, "device 'banana'"),
    # ---- input files (input)
    ("encode {folder} -o {d}/o.npy", INPUT, "is a folder; expected a file"),
    ("search panda --corpus {folder}", INPUT, "is a folder; expected a file"),
    ("encode {bad_utf8} -o {d}/o.npy --model {bert}", INPUT, "latin1.txt:2: not valid UTF-8 (byte 0xe9 at column 4)"),
    ("encode {truncated_gz} -o {d}/o.npy --model {bert}", INPUT, "truncated or corrupt gzip file"),
    ("eval beir --dataset-dir {beir_truncated_gz} --retrieval bm25", INPUT, "truncated or corrupt gzip file"),
    ("eval beir --dataset-dir {txt} --retrieval bm25", INPUT, "is a file; expected a dataset folder"),
    ("index build --corpus {folder} --index-dir {d}/ix-f", INPUT, "is a folder; expected a file"),
    ("index info --index-dir {index_bad_sqlite}", INPUT, "docs.sqlite: the index's document table is damaged"),
    ("search panda --index-dir {index_bad_sqlite}", INPUT, "docs.sqlite: the index's document table is damaged"),
    ("search panda --index-dir {index_bad_pages}", INPUT, "docs.sqlite: the index's document table is damaged"),
    ("index info --index-dir {index_bad_pages}", INPUT, "docs.sqlite: the index's document table is damaged"),
    ("index info --index-dir {index_bad_manifest}", INPUT, "manifest.json: not valid JSON"),
    ("eval report {txt}", INPUT, "texts.txt:1: not valid JSON"),
    # ---- models (model)
    ("encode {txt} -o {d}/o.npy --model {model_bad_config}", MODEL, "config.json:2: the model's config.json is not valid JSON"),
    ("encode {txt} -o {d}/o.npy --model {model_truncated_weights}", MODEL, "model_truncated_weights/model.safetensors"),
    ("encode {txt} -o {d}/o.npy --model {model_garbage_weights}", MODEL, "cannot read the model weights in"),
    ("encode {long_txt} -o {d}/o.npy --model {bert} --max-length 600", MODEL, "beyond the model's position limit of 512"),
    ("rerank {pairs} --model {xlmr} --max-length 600", MODEL, "beyond the model's position limit of 512"),
    ("eval beir --dataset-dir {beir} --model {bert} --retrieval sparse", MODEL, "is a dense-only embedder"),
    ("encode {txt} -o {d}/o.npy --model BAAI/bge-smal-en-v1.5", MODEL, "Did you mean 'BAAI/bge-small-en-v1.5'"),
    ("encode {txt} -o {d}/o.npy --model BAAI/bge-base-en-v1.5", MODEL, "`hf download BAAI/bge-base-en-v1.5"),
    ("rerank {pairs} --model BAAI/bge-reranker-v2-m3", MODEL, "bgekit ships no reranker weights"),
    ("search panda --index-dir {index} --model {m3}", MODEL, "kind='encoder'"),
    ("index build --corpus {corpus} --index-dir {d}/ix-do --model {bert} --dense-only", MODEL, "--dense-only applies to BGE-M3"),
    ("index build --corpus {corpus} --index-dir {d}/ix-cb --model {bert} --colbert", MODEL, "--colbert applies to BGE-M3"),
    # ---- outputs and services (I/O), all before any encoding
    ("encode {txt} -o {txt}/sub/o.npy --model {bert}", IO, "is a file, so the folder"),
    ("encode {txt} -o {folder_npy} --model {bert}", IO, "is a folder; give a file path"),
    ("eval beir --dataset-dir {beir} --retrieval bm25 --output {txt}/r.json", IO, "is a file, so the folder"),
    ("index build --corpus {corpus} --index-dir {txt}/ix --model {bert}", IO, "is a file, so the folder"),
    ("rerank {pairs} --model {xlmr} -o {folder}", IO, "is a folder; give a file path"),
    ("eval beir --dataset-dir {beir} --model {bert} --cache-dir {txt}", USAGE, "--cache-dir) is a file"),
    ("index export-qdrant --index-dir {index} --collection c --qdrant-url http://127.0.0.1:9", IO,
     "cannot reach the Qdrant server at http://127.0.0.1:9"),
    # ---- accepted now (were refused)
    ("encode {bom_jsonl} -o {d}/bom.npy --model {bert}", 0, "encoded 2 texts"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("bad-input"))


def run_cli(argv, capsys):
    from bgekit.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("command,code,fragment", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input(command, code, fragment, files, capsys, monkeypatch):
    monkeypatch.delenv("BGEKIT_DEBUG", raising=False)
    got, err = run_cli(shlex.split(command.format(**files)), capsys)
    assert got == code, err
    assert fragment in err
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "Loading weights" not in line]
    assert "Traceback" not in err
    if code != 0:
        last = [line for line in lines if line.startswith("bgekit")]
        assert last, err  # argparse's "bgekit COMMAND: error: ..." or ours
        assert len(lines) <= 2, err


def test_relative_new_outputs_are_accepted(tmp_path, monkeypatch):
    """`--index-dir my-index` / `-o out.npy` relative to the working folder, which does not exist yet."""
    from bgekit.cli.checks import check_output, check_output_dir

    monkeypatch.chdir(tmp_path)
    assert check_output_dir("my-index", "--index-dir") == "my-index"
    assert check_output("out.npy", "-o", (".npy",)) == "out.npy"
    assert check_output("new/sub/out.npy", "-o") == "new/sub/out.npy"
