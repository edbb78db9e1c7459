"""`bgekit train embedder`: FlagEmbedding's --snake_case names and --kebab-case both work; bad options are named."""
import os

import numpy as np
import pytest

from bgekit import FlagAutoModel
from bgekit.cli import main
from bgekit.train.args import parse_embedder_args
from golden import GOLDEN

BERT = str(GOLDEN / "models" / "bert-embedder")
DATA = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples", "embedder", "retrieval", "nli.jsonl")


pytestmark = pytest.mark.usefixtures("one_thread")


def _options(out, kebab):
    opts = ["--model_name_or_path", BERT, "--train_data", DATA, "--output_dir", str(out), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--train_group_size", "2", "--query_max_len", "16",
            "--passage_max_len", "16", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
            "--disable_tqdm", "true", "--sentence_pooling_method", "mean", "--temperature", "0.05"]
    return [o.replace("_", "-") if kebab and o.startswith("--") else o for o in opts]


def test_snake_and_kebab_spellings_parse_the_same(tmp_path):
    snake = parse_embedder_args(_options(tmp_path, kebab=False) + ["--negatives_cross_device", "--warmup_ratio", "0.1"])
    kebab = parse_embedder_args(_options(tmp_path, kebab=True) + ["--negatives-cross-device", "--warmup-ratio", "0.1"])
    for a, b in zip(snake, kebab):
        assert a == b
    model, data, training = snake
    assert model.model_name_or_path == BERT and data.train_data == [DATA] and training.temperature == 0.05
    assert training.negatives_cross_device and training.warmup_steps == 0.1


def test_cli_trains_and_the_folder_loads_by_its_spec(tmp_path, capsys):
    out = tmp_path / "renamed-anything"
    assert main(["train", "embedder", "--model", BERT] + _options(out, kebab=True)[2:]) == 0
    assert "saved the trained encoder embedder" in capsys.readouterr().out
    model = FlagAutoModel.from_finetuned(str(out), devices="cpu")
    assert model.pooling_method == "mean" and model.encode(["a", "b"]).shape == (2, 32)
    assert np.isfinite(model.encode(["x"])).all()


@pytest.mark.parametrize("extra, message", [
    (["--bogus-option", "3"], "unknown option(s) --bogus-option"),
    (["--kd_loss_type", "mse"], None),
    (["--use_mrl"], "--use_mrl needs --mrl_dims"),
    (["--use_self_distill"], "need --unified_finetuning"),
    (["--train_group_size", "0"], "--train_group_size must be a positive integer"),
])
def test_bad_options_are_named(tmp_path, capsys, extra, message):
    if message is None:  # argparse rejects a value outside the choices itself
        with pytest.raises(SystemExit):
            main(["train", "embedder"] + _options(tmp_path / "o", kebab=False) + extra)
        assert "invalid choice: 'mse'" in capsys.readouterr().err
        return
    assert main(["train", "embedder"] + _options(tmp_path / "o", kebab=False) + extra) == 2  # usage error (bgekit.errors)
    assert message in capsys.readouterr().err


def test_non_empty_output_dir_needs_resume_or_overwrite(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "old.txt").write_text("x")
    assert main(["train", "embedder"] + _options(tmp_path / "o", kebab=False)) == 2  # usage error (bgekit.errors)
    assert "is not empty" in capsys.readouterr().err


def test_help_lists_flagembedding_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "embedder", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--train_data", "--negatives_cross_device", "--unified_finetuning", "--use_lora", "--deepspeed"):
        assert option in text


def test_attn_implementation_is_used_for_training(tmp_path):
    from bgekit.train.run import build_embedder_training

    _, model = build_embedder_training(*parse_embedder_args(_options(tmp_path / "o", kebab=False)
                                                            + ["--attn_implementation", "eager"]))
    assert model.model.config._attn_implementation == "eager"
