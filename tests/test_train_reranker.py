"""Reranker training on the tiny golden checkpoints: a few steps lower the loss; the saved folder loads (FlagAutoReranker
and the native classes, whatever it is named) with scores identical to the trained model in memory; and what the
training forward scores is exactly what inference scores for the same pairs."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from bgekit import EarlyExitReranker, FlagAutoReranker, Reranker
from bgekit.compat.reranker import FlagLLMReranker, FlagReranker
from bgekit.compat.layerwise import LayerWiseFlagLLMReranker
from bgekit.train.reranker_args import parse_reranker_args
from bgekit.train.run_reranker import build_reranker_training
from golden import GOLDEN

MODELS = GOLDEN / "models"
BERT_RR, XLMR_RR, LLM_RR, LAYERWISE = (str(MODELS / n) for n in ("bert-reranker", "xlmr-reranker", "llm-reranker",
                                                                 "layerwise-reranker"))
BERT_EMB = str(MODELS / "bert-embedder")

ROWS = [
    ("what do pandas eat", "Pandas eat bamboo almost exclusively.", ["The stock market fell today.", "Rain is expected."]),
    ("how do vaccines work", "Vaccines train the immune system.", ["Bamboo grows fast.", "The match ended in a draw."]),
    ("capital of france", "Paris is the capital of France.", ["Berlin has many museums.", "Vaccines are injected."]),
    ("why is the sky blue", "Rayleigh scattering makes the sky blue.", ["Pandas live in China.", "Madrid is in Spain."]),
]
PAIRS = [(q, p) for q, pos, neg in ROWS for p in [pos] + neg]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with open(path, "w") as f:
        for i, (q, pos, neg) in enumerate(ROWS):
            f.write(json.dumps({"query": q, "pos": [pos], "neg": neg, "pos_scores": [3.0 - i * 0.1],
                                "neg_scores": [-1.0, 0.5 - i]}) + "\n")
    return str(path)


def _args(model, data, out, *extra, steps=6):
    return parse_reranker_args([
        "--model", model, "--train_data", data, "--output_dir", str(out), "--max_steps", str(steps),
        "--per_device_train_batch_size", "4", "--train_group_size", "3", "--learning_rate", "1e-3",
        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true",
        "--disable_tqdm", "true", "--query_max_len", "16", "--passage_max_len", "32", *extra])


def _eval_loss(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch)["loss"].item()


def _train(args):
    """Train; return (fixed batch, its groups, loss before, loss after, the training model)."""
    trainer, model = build_reranker_training(*args)
    trainer.batch_sampler.set_epoch(0)
    groups = [trainer.train_dataset[k] for k in next(iter(trainer.batch_sampler))]
    batch = trainer.data_collator(groups)
    before = _eval_loss(model, batch)
    trainer.train()
    after = _eval_loss(model, batch)
    trainer.save_model()
    assert trainer.state.global_step == args[2].max_steps
    assert after < before, (before, after)
    return batch, groups, model


def _training_scores_match_inference(model, batch, groups, reranker, **score_kwargs):
    """The training forward's scores for a batch equal the inference reranker's for the same raw pairs."""
    with torch.no_grad():
        trained = model(**batch)["scores"].numpy()
    pairs = [(g.query, p) for g in groups for p in g.passages]
    expected = reranker.score(pairs, **score_kwargs)
    np.testing.assert_allclose(trained, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("base, extra", [
    (BERT_RR, []),
    (XLMR_RR, ["--knowledge_distillation", "--sub_batch_size", "5"]),
])
def test_cross_encoder_trains_and_reloads_identically(tmp_path, data, base, extra):
    out = tmp_path / "any-name"
    batch, groups, model = _train(_args(base, data, out, *extra))
    trained = model.finish()
    native = Reranker(str(out))
    assert native.kind == "cross-encoder" and native.max_length == 48 and native.query_max_length == 16
    fresh = native.score(PAIRS)
    native.model = trained  # same code path, the in-memory weights
    assert native.score(PAIRS) == fresh
    _training_scores_match_inference(model, batch, groups, native)
    compat = FlagAutoReranker.from_finetuned(str(out))
    assert isinstance(compat, FlagReranker)
    np.testing.assert_allclose(compat.compute_score(PAIRS), fresh, rtol=1e-5, atol=1e-6)


def test_cross_encoder_from_an_embedder_gets_a_new_head(tmp_path, data):
    out = tmp_path / "renamed"
    _train(_args(BERT_EMB, data, out))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 1
    assert json.loads((out / "bgekit_spec.json").read_text())["kind"] == "cross-encoder"
    assert isinstance(FlagAutoReranker.from_finetuned(str(out)), FlagReranker)


def test_llm_reranker_lora_scores_the_yes_token_as_inference_does(tmp_path, data):
    out = tmp_path / "my-llm"
    batch, groups, model = _train(_args(LLM_RR, data, out, "--lora_rank", "8", "--lora_alpha", "16",
                                        "--lora_dropout", "0.0", "--learning_rate", "5e-3"))
    assert os.path.isfile(out / "adapter" / "adapter_model.safetensors")
    trained = model.finish()
    native = Reranker(str(out))
    assert native.kind == "llm" and native.query_instruction == "A: " and native.passage_instruction == "B: "
    fresh = native.score(PAIRS)
    native.model = trained
    assert native.score(PAIRS) == fresh
    _training_scores_match_inference(model, batch, groups, native)
    compat = FlagAutoReranker.from_finetuned(str(out))
    assert isinstance(compat, FlagLLMReranker)
    np.testing.assert_allclose(compat.compute_score(PAIRS), fresh, rtol=1e-5, atol=1e-5)


def test_llm_reranker_uses_the_example_prompt(tmp_path):
    path = tmp_path / "prompted.jsonl"
    path.write_text("".join(json.dumps({"query": q, "pos": [p], "neg": n, "prompt": "Is B about A?"}) + "\n"
                            for q, p, n in ROWS))
    trainer, model = build_reranker_training(*_args(LLM_RR, str(path), tmp_path / "o"))
    groups = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(groups)
    model.eval()
    _training_scores_match_inference(model, batch, groups, Reranker(LLM_RR), prompt="Is B about A?")


def _head_weights(model):
    base = model.base
    return {i: base.lm_head[i].linear_head.weight.detach().clone() for i in range(len(base.lm_head))}


def test_layerwise_trains_every_chosen_layer(tmp_path, data):
    out = tmp_path / "lw"
    args = _args(LAYERWISE, data, out, "--cutoff_layers", "2", "3")
    trainer, model = build_reranker_training(*args)
    before = _head_weights(model)
    trainer.train()
    trainer.save_model()
    after = _head_weights(model)
    assert torch.equal(before[0], after[0])  # layer 1 was not chosen: its head is untouched
    assert not torch.equal(before[1], after[1]) and not torch.equal(before[2], after[2])
    trained = model.finish()
    native = EarlyExitReranker(str(out))
    fresh = native.score_layers(PAIRS, layers=[1, 2, 3])
    native.model = trained
    assert native.score_layers(PAIRS, layers=[1, 2, 3]) == fresh
    compat = FlagAutoReranker.from_finetuned(str(out), use_fp16=True, cutoff_layers=[3])
    assert isinstance(compat, LayerWiseFlagLLMReranker)
    np.testing.assert_allclose(compat.compute_score(PAIRS), fresh[3], rtol=1e-5, atol=1e-5)


def test_layerwise_loss_decreases_and_matches_inference(tmp_path, data):
    batch, groups, model = _train(_args(LAYERWISE, data, tmp_path / "lw", "--learning_rate", "2e-3"))
    assert model(**batch)["scores"].shape == (3, 12)  # every layer with a head, 4 groups of 3
    native = EarlyExitReranker(str(tmp_path / "lw"), max_length=48, query_max_length=16)
    with torch.no_grad():
        trained = model(**batch)["scores"].numpy()
    pairs = [(g.query, p) for g in groups for p in g.passages]
    expected = native.score_layers(pairs, layers=[1, 2, 3])
    np.testing.assert_allclose(trained, [expected[x] for x in (1, 2, 3)], rtol=1e-5, atol=1e-5)


def test_layerwise_from_a_raw_minicpm_model(tmp_path, data):
    """A plain MiniCPM language model gets new heads that start as its LM head's "Yes" row."""
    from safetensors.torch import load_file, save_file

    raw = tmp_path / "raw-minicpm"
    shutil.copytree(LAYERWISE, raw)
    os.chmod(raw, 0o755)
    for name in os.listdir(raw):
        os.chmod(raw / name, 0o644)
    config = json.loads((raw / "config.json").read_text())
    for key in ("head_multi", "head_type", "start_layer"):
        config.pop(key)
    config["architectures"] = ["MiniCPMForCausalLM"]
    (raw / "config.json").write_text(json.dumps(config))
    state = {k: v for k, v in load_file(str(raw / "model.safetensors")).items() if k.startswith("model.")}
    state["lm_head.weight"] = torch.randn(config["vocab_size"], config["hidden_size"])
    save_file(state, str(raw / "model.safetensors"))
    args = _args(str(raw), data, tmp_path / "out", "--model_class", "decoder-only-layerwise", "--model_type",
                 "from_raw_model", "--start_layer", "2", "--head_multi", "true")
    trainer, model = build_reranker_training(*args)
    yes = trainer.processing_class("Yes", add_special_tokens=False)["input_ids"][0]
    assert model.layers == [2, 3]
    assert torch.equal(model.base.lm_head[0].linear_head.weight[0], state["lm_head.weight"][yes])
    trainer.train()
    trainer.save_model()
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["start_layer"] == 2 and saved["head_multi"] is True
    assert EarlyExitReranker(str(tmp_path / "out")).model.valid_layers() == [2, 3]


def test_lightweight_is_refused_with_the_trainable_kinds(tmp_path, data):
    with pytest.raises(ValueError, match="trainable kinds: cross-encoder, llm, layerwise"):
        build_reranker_training(*_args(str(MODELS / "lightweight-reranker"), data, tmp_path / "o"))


class Killed(Exception):
    """Stands for the process being killed."""


@pytest.mark.parametrize("base, extra", [
    (LLM_RR, ["--lora_rank", "4", "--lora_dropout", "0.0"]),  # LoRA: the adapter is reloaded
    (LAYERWISE, []),                                        # full weights of the bgekit layerwise model
])
def test_killed_run_resumes_to_the_same_model(tmp_path, data, base, extra):
    from transformers import TrainerCallback

    from bgekit.train.run_reranker import train_reranker

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise Killed

    def args(out, *more):
        a = _args(base, data, out, "--save_strategy", "steps", "--save_steps", "2", "--seed", "3", *extra, *more, steps=4)
        return a

    trainer, _ = build_reranker_training(*args(tmp_path / "run"))
    trainer.add_callback(KillAfterSave())
    with pytest.raises(Killed):
        trainer.train()
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint-2"]
    resumed = train_reranker(*args(tmp_path / "run", "--resume_from_checkpoint", "true")).finish()
    straight = train_reranker(*args(tmp_path / "straight")).finish()
    for a, b in zip(resumed.state_dict().values(), straight.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
