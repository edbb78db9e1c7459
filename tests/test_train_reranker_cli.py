"""`bgekit train reranker`: FlagEmbedding's --snake_case names and --kebab-case both work; bad options are named."""
import os

import pytest

from bgekit import FlagAutoReranker
from bgekit.cli import main
from bgekit.compat.reranker import FlagReranker
from bgekit.train.reranker_args import parse_reranker_args
from golden import GOLDEN

BERT_RR = str(GOLDEN / "models" / "bert-reranker")
DATA = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples", "reranker", "normal", "examples.jsonl")


pytestmark = pytest.mark.usefixtures("one_thread")


def _options(out, kebab):
    opts = ["--model_name_or_path", BERT_RR, "--train_data", DATA, "--output_dir", str(out), "--max_steps", "2",
            "--per_device_train_batch_size", "2", "--train_group_size", "3", "--query_max_len", "16",
            "--passage_max_len", "32", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
            "--disable_tqdm", "true", "--query_instruction_for_rerank", "Q: "]
    return [o.replace("_", "-") if kebab and o.startswith("--") else o for o in opts]


def test_snake_and_kebab_spellings_parse_the_same(tmp_path):
    snake = parse_reranker_args(_options(tmp_path, kebab=False) + ["--knowledge_distillation", "--warmup_ratio", "0.1",
                                                                 "--model_type", "encoder", "--sep_token", "\\n"])
    kebab = parse_reranker_args(_options(tmp_path, kebab=True) + ["--knowledge-distillation", "--warmup-ratio", "0.1",
                                                                "--model-type", "encoder", "--sep-token", "\\n"])
    for a, b in zip(snake, kebab):
        assert a == b
    model, data, training = snake
    assert model.model_name_or_path == BERT_RR and data.train_data == [DATA] and data.max_length == 48
    assert data.knowledge_distillation and training.warmup_steps == 0.1 and model.model_type == "encoder"


def test_cli_trains_and_the_folder_loads_by_its_spec(tmp_path, capsys):
    out = tmp_path / "renamed-anything"
    assert main(["train", "reranker", "--model", BERT_RR] + _options(out, kebab=True)[2:]) == 0
    assert "saved the trained cross-encoder reranker" in capsys.readouterr().out
    reranker = FlagAutoReranker.from_finetuned(str(out))
    assert isinstance(reranker, FlagReranker) and len(reranker.compute_score([["a", "b"], ["c", "d"]])) == 2
    from bgekit import Reranker

    native = Reranker(str(out))
    assert native.query_instruction == "Q: " and native.max_length == 48 and native.query_max_length == 16


@pytest.mark.parametrize("extra, message", [
    (["--bogus-option", "3"], "unknown option(s) --bogus-option"),
    (["--train_group_size", "0"], "--train_group_size must be a positive integer"),
    (["--sep_token", "</s>"], "--sep_token '</s>'"),
    (["--model_class", "decoder-only-layerwise"], "layerwise training needs a MiniCPM model"),
])
def test_bad_options_are_named(tmp_path, capsys, extra, message):
    assert main(["train", "reranker"] + _options(tmp_path / "o", kebab=False) + extra) == 2  # usage error (bgekit.errors)
    assert message in capsys.readouterr().err


def test_non_empty_output_dir_needs_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "old.txt").write_text("x")
    assert main(["train", "reranker"] + _options(tmp_path / "o", kebab=False)) == 2  # usage error (bgekit.errors)
    assert "is not empty" in capsys.readouterr().err


def test_help_lists_flagembedding_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "reranker", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--train_group_size", "--query_instruction_for_rerank", "--use_lora", "--cutoff_layers",
                   "--knowledge_distillation", "--gradient_accumulation_steps"):
        assert option in text


def test_attn_implementation_is_used_for_training_only(tmp_path):
    from bgekit.train.run_reranker import build_reranker_training

    _, model = build_reranker_training(*parse_reranker_args(_options(tmp_path / "o", kebab=False)
                                                            + ["--attn_implementation", "eager"]))
    assert model.model.config._attn_implementation == "eager"
