"""What a newcomer's first hour needs: `bgekit rerank` names its missing --model; FlagEmbedding's example-data root as one --train_data folder
(searched recursively) and --bf16 on a machine without a GPU (no --use_cpu needed)."""
import json
import os

import pytest

from bgekit import FlagAutoReranker
from bgekit.cli import main
from bgekit.train.args import parse_embedder_args
from bgekit.train.data import load_sources
from bgekit.train.reranker_args import parse_reranker_args
from golden import GOLDEN

EXAMPLES = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples")
BERT = str(GOLDEN / "models" / "bert-embedder")
BERT_RR = str(GOLDEN / "models" / "bert-reranker")

pytestmark = pytest.mark.usefixtures("one_thread")


def _no_gpu() -> bool:
    import torch

    return torch.accelerator.current_accelerator() is None


def test_example_data_root_is_searched_recursively():
    sources = load_sources([os.path.join(EXAMPLES, "embedder")])
    names = {os.path.relpath(s.name, EXAMPLES): s for s in sources}
    assert sorted(names) == sorted([
        "embedder/classification-no_in_batch_neg/AmazonClassification.jsonl",
        "embedder/classification-no_in_batch_neg/Banking77Classification.jsonl",
        "embedder/clustering-no_in_batch_neg/arXiv_title.jsonl",
        "embedder/clustering-no_in_batch_neg/bioRXiv_title.jsonl",
        "embedder/retrieval/msmarco.jsonl", "embedder/retrieval/nli.jsonl", "embedder/retrieval/nq.jsonl",
        "embedder/sts/sts.jsonl"])
    marked = {n for n, s in names.items() if s.no_in_batch_neg}
    assert marked == {n for n in names if "no_in_batch_neg/" in n}


def test_small_files_merge_per_subfolder_and_keep_the_subfolder_mark(tmp_path):
    good = json.dumps({"query": "q", "pos": ["p"], "neg": ["n"]}) + "\n"
    for sub, name in [("a", "x.jsonl"), ("a", "y.jsonl"), ("b-no_in_batch_neg", "z.jsonl"), ("b-no_in_batch_neg/deep", "w.json")]:
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / name).write_text(good * 2)
    (tmp_path / "a" / ".hidden.jsonl").write_text("not json\n")      # editor leftovers are not training data
    sources = load_sources([str(tmp_path)], small_threshold=5)
    merged = {os.path.relpath(s.name, tmp_path): (len(s.examples), s.no_in_batch_neg) for s in sources}
    assert merged == {"a (merged small files)": (4, False), "b-no_in_batch_neg (merged small files)": (2, True),
                      os.path.join("b-no_in_batch_neg", "deep") + " (merged small files)": (2, False)}


def test_empty_folder_tree_is_an_error_naming_it(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no .jsonl / .json files"):
        load_sources([str(tmp_path)])


@pytest.mark.skipif(not _no_gpu(), reason="use_cpu is set only where there is no accelerator")
@pytest.mark.parametrize("parse, model", [(parse_embedder_args, BERT), (parse_reranker_args, BERT_RR)])
def test_bf16_without_a_gpu_trains_on_the_cpu(tmp_path, parse, model):
    *_, training = parse(["--model", model, "--train_data", EXAMPLES, "--output_dir", str(tmp_path), "--bf16"])
    assert training.bf16 and training.use_cpu
    *_, plain = parse(["--model", model, "--train_data", EXAMPLES, "--output_dir", str(tmp_path)])
    assert plain.use_cpu                 # also without --bf16: torchrun's processes on a CPU then form a process group


@pytest.mark.skipif(not _no_gpu(), reason="bf16 picks the CPU only where there is no accelerator")
def test_cli_reranker_bf16_on_cpu_from_the_example_root(tmp_path, capsys):
    out = tmp_path / "rr"
    argv = ["train", "reranker", "--model", BERT_RR, "--train-data", os.path.join(EXAMPLES, "reranker"),
            "--output-dir", str(out), "--bf16", "--max-steps", "1", "--per-device-train-batch-size", "2",
            "--train-group-size", "2", "--query-max-len", "16", "--passage-max-len", "16", "--report-to", "none",
            "--save-strategy", "no", "--disable-tqdm", "true"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "saved the trained" in capsys.readouterr().out
    scores = FlagAutoReranker.from_finetuned(str(out), devices="cpu").compute_score([["q", "p"], ["q", "other"]])
    assert len(scores) == 2 and all(s == s for s in scores)           # finite, not NaN


def test_rerank_without_model_is_a_clear_usage_error_before_any_download(tmp_path, capsys):
    passages = tmp_path / "docs.txt"
    passages.write_text("a bear\na car\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["rerank", str(passages), "--query", "what is panda?"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: --model" in capsys.readouterr().err
