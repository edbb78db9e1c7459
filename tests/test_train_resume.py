"""Checkpoints and resume: a killed run resumes to the same final step (and model); saving never leaves a
half-written model or checkpoint under its final name."""
import json
import os

import numpy as np
import pytest
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from bgekit.registry import SPEC_FILE
from bgekit.train.args import parse_embedder_args
from bgekit.train.run import build_embedder_training, train_embedder
from bgekit.train.trainer import GroupTrainer, publish_folder
from golden import GOLDEN

BERT = str(GOLDEN / "models" / "bert-embedder")
DATA = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples", "embedder", "retrieval", "msmarco.jsonl")
TEXTS = ["pandas eat bamboo", "what is the capital of france"]


class Killed(Exception):
    """Stands for the process being killed."""


class KillAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed


pytestmark = pytest.mark.usefixtures("one_thread")


def _args(out, *extra):
    return parse_embedder_args([
        "--model", BERT, "--train_data", DATA, "--output_dir", str(out), "--max_steps", "6", "--save_steps", "3",
        "--per_device_train_batch_size", "2", "--train_group_size", "3", "--learning_rate", "1e-3",
        "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
        "--query_max_len", "16", "--passage_max_len", "24", "--seed", "7", *extra])


def _state(checkpoint):
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        return json.load(f)


def test_killed_run_resumes_to_the_same_final_step_and_model(tmp_path):
    out = tmp_path / "run"
    trainer, _ = build_embedder_training(*_args(out))
    trainer.add_callback(KillAfterSave(3))
    with pytest.raises(Killed):
        trainer.train()
    assert sorted(os.listdir(out)) == ["checkpoint-3"]  # no final model, no staging leftovers
    assert os.path.isfile(out / "checkpoint-3" / SPEC_FILE) and _state(out / "checkpoint-3")["global_step"] == 3

    with pytest.raises(ValueError, match="not empty"):
        train_embedder(*_args(out))
    resumed = train_embedder(*_args(out, "--resume_from_checkpoint", "true"))
    assert get_last_checkpoint(str(out)).endswith("checkpoint-6")
    assert _state(out / "checkpoint-6")["global_step"] == 6
    assert os.path.isfile(out / SPEC_FILE)

    straight = train_embedder(*_args(tmp_path / "straight"))
    assert np.allclose(resumed.encode(TEXTS), straight.encode(TEXTS), atol=1e-6)
    logged = [h["loss"] for h in _state(out / "checkpoint-6")["log_history"] if "loss" in h]
    reference = [h["loss"] for h in _state(tmp_path / "straight" / "checkpoint-6")["log_history"] if "loss" in h]
    assert logged == pytest.approx(reference, abs=1e-4) and len(logged) == 6


def test_kill_while_writing_a_checkpoint_leaves_only_complete_checkpoints(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = GroupTrainer._save_rng_state

    def dying(self, output_dir):
        if self.state.global_step == 6:
            raise Killed
        return real(self, output_dir)

    monkeypatch.setattr(GroupTrainer, "_save_rng_state", dying)
    with pytest.raises(Killed):
        train_embedder(*_args(out))
    assert [d for d in os.listdir(out) if d.startswith("checkpoint-")] == ["checkpoint-3"]
    assert get_last_checkpoint(str(out)).endswith("checkpoint-3")
    monkeypatch.setattr(GroupTrainer, "_save_rng_state", real)
    train_embedder(*_args(out, "--resume_from_checkpoint", "true"))
    assert _state(out / "checkpoint-6")["global_step"] == 6
    assert ".bgekit-staging" not in os.listdir(out)


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint-N folder"):
        train_embedder(*_args(tmp_path / "empty", "--resume_from_checkpoint", "true"))
    (tmp_path / "notours").mkdir()
    (tmp_path / "notours" / "model.safetensors").write_text("x")
    trainer, _ = build_embedder_training(*_args(tmp_path / "o"))
    with pytest.raises(ValueError, match="not a complete bgekit checkpoint"):
        trainer._load_from_checkpoint(str(tmp_path / "notours"))


def test_publish_folder_failures_never_leave_a_marked_half_model(tmp_path, monkeypatch):
    target = tmp_path / "model"

    def write(version):
        def fn(folder):
            for name in ("weights.bin", "config.json", SPEC_FILE):
                (open(os.path.join(folder, name), "w")).write(version)
        return fn

    publish_folder(str(target), write("v1"))
    assert (target / "weights.bin").read_text() == "v1" and (target / SPEC_FILE).exists()

    def broken(folder):
        (open(os.path.join(folder, "weights.bin"), "w")).write("v2-partial")
        raise Killed

    with pytest.raises(Killed):
        publish_folder(str(target), broken)
    assert sorted(os.listdir(target)) == sorted(["config.json", SPEC_FILE, "weights.bin"])  # untouched, no staging
    assert (target / "weights.bin").read_text() == "v1"

    calls = []
    real_replace = os.replace

    def dies_on_second_move(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise Killed
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_on_second_move)
    with pytest.raises(Killed):
        publish_folder(str(target), write("v3"))
    assert not (target / SPEC_FILE).exists()   # mixed files are never marked complete
    monkeypatch.setattr(os, "replace", real_replace)
    publish_folder(str(target), write("v4"))
    assert all((target / n).read_text() == "v4" for n in ("weights.bin", "config.json", SPEC_FILE))
    assert not [n for n in os.listdir(target) if n.startswith(".tmp")]
