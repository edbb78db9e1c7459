"""Every embedder training variant on the tiny golden checkpoints: a few steps lower the training loss, and the
saved folder reloads (bgekit.load_embedder and FlagAutoModel, whatever the folder is named) with outputs
identical to the trained model in memory."""
import json
import os

import numpy as np
import pytest
import torch

from bgekit import FlagAutoModel, load_embedder
from bgekit.train.args import parse_embedder_args
from bgekit.train.run import build_embedder_training
from golden import GOLDEN

MODELS = GOLDEN / "models"
BERT, M3, DECODER = (str(MODELS / n) for n in ("bert-embedder", "m3", "decoder-embedder"))
EXAMPLES = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples", "embedder")
TEXTS = ["pandas eat bamboo", "what is the capital of france", "rain"]

ROWS = [
    ("what do pandas eat", "Pandas eat bamboo almost exclusively.", ["The stock market fell today.", "Rain is expected."]),
    ("how do vaccines work", "Vaccines train the immune system.", ["Bamboo grows fast.", "The match ended in a draw."]),
    ("capital of france", "Paris is the capital of France.", ["Berlin has many museums.", "Vaccines are injected."]),
    ("why is the sky blue", "Rayleigh scattering makes the sky blue.", ["Pandas live in China.", "Madrid is in Spain."]),
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with open(path, "w") as f:
        for i, (q, pos, neg) in enumerate(ROWS):
            f.write(json.dumps({"query": q, "pos": [pos], "neg": neg, "pos_scores": [9.0 - i], "neg_scores": [1.0, 0.5 + i],
                                "prompt": "Find the passage that answers.", "type": "normal"}) + "\n")
    return str(path)


def _args(model, data, out, *extra, steps=6):
    return parse_embedder_args([
        "--model", model, "--train_data", data, "--output_dir", str(out), "--max_steps", str(steps),
        "--per_device_train_batch_size", "4", "--train_group_size", "3", "--learning_rate", "2e-3",
        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true",
        "--disable_tqdm", "true", "--query_max_len", "24", "--passage_max_len", "24", "--temperature", "0.1", *extra])


def _eval_loss(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch)["loss"].item()


def _train(args):
    """Train; return (in-memory embedder, loss on a fixed batch before, after, the training model)."""
    trainer, model = build_embedder_training(*args)
    trainer.batch_sampler.set_epoch(0)
    batch = trainer.data_collator([trainer.train_dataset[k] for k in next(iter(trainer.batch_sampler))])
    before = _eval_loss(model, batch)
    trainer.train()
    after = _eval_loss(model, batch)
    trainer.save_model()
    assert trainer.state.global_step == args[2].max_steps
    return model.finish(), before, after, model


def _same_dense(a, b):
    for fn in ("encode_queries", "encode_corpus", "encode"):
        assert np.array_equal(getattr(a, fn)(TEXTS), getattr(b, fn)(TEXTS)), fn


VARIANTS = {
    "encoder": (BERT, ["--query_instruction_for_retrieval", "Query: ", "--passage_instruction_for_retrieval", "Doc: "]),
    "encoder-kd-kl_div": (BERT, ["--knowledge_distillation", "--sub_batch_size", "5", "--pad_to_multiple_of", "8"]),
    "encoder-kd-m3_kd_loss": (BERT, ["--knowledge_distillation", "--kd_loss_type", "m3_kd_loss", "--gradient_checkpointing"]),
    "encoder-matryoshka-bf16": (BERT, ["--use_mrl", "--mrl_dims", "8", "16", "--sentence_pooling_method", "mean", "--bf16"]),
    "decoder-lora": (DECODER, ["--lora_rank", "4", "--lora_alpha", "8", "--target_modules", "q_proj", "v_proj", "o_proj",
                               "--query_instruction_for_retrieval", "Find it", "--gradient_checkpointing",
                               "--gradient_accumulation_steps", "2"]),
    "icl-lora": (DECODER, ["--model_class", "decoder-only-icl", "--lora_rank", "4", "--lora_alpha", "8", "--query_max_len", "64"]),
    # real sts / clustering data: symmetric passages wrapped like ICL queries, categories as in-context responses
    "icl-symmetric-same-source": (DECODER, [
        "--model_class", "decoder-only-icl", "--lora_rank", "4", "--lora_alpha", "8", "--query_max_len", "64",
        "--same_dataset_within_batch", "--train_data", os.path.join(EXAMPLES, "sts"),
        os.path.join(EXAMPLES, "clustering-no_in_batch_neg")]),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_dense_variant_trains_and_reloads_identically(tmp_path, data, name):
    model, extra = VARIANTS[name]
    out = tmp_path / "any-name"
    emb, before, after, _ = _train(_args(model, data, out, *extra))
    assert after < before, (before, after)
    reloaded = load_embedder(str(out), devices="cpu")
    assert type(reloaded).__name__ == "Embedder" and reloaded.spec.kind == emb.spec.kind
    _same_dense(emb, reloaded)
    auto = FlagAutoModel.from_finetuned(str(out), devices="cpu")
    assert np.array_equal(auto.encode(TEXTS), emb.encode(TEXTS))


def test_lora_run_saves_merged_weights_and_the_adapter(tmp_path, data):
    out = tmp_path / "lora"
    _train(_args(DECODER, data, out, "--lora_rank", "4", steps=2))
    assert os.path.isfile(out / "model.safetensors") and os.path.isfile(out / "adapter" / "adapter_model.safetensors")
    spec = json.loads((out / "bgekit_spec.json").read_text())
    assert spec["kind"] == "decoder" and spec["pooling"] == "last_token"


def test_no_in_batch_negative_folders_train_with_own_groups_only(tmp_path):
    folder = os.path.join(EXAMPLES, "classification-no_in_batch_neg")
    args = _args(BERT, folder, tmp_path / "cls", "--same_dataset_within_batch", "--train_group_size", "4",
                 "--query_instruction_for_retrieval", "Classify: ")
    trainer, _ = build_embedder_training(*args)
    batch = trainer.data_collator([trainer.train_dataset[k] for k in next(iter(trainer.batch_sampler))])
    assert batch["no_in_batch_neg"] is True
    emb, before, after, _ = _train(args)
    assert after < before
    _same_dense(emb, load_embedder(str(tmp_path / "cls"), devices="cpu"))


def _same_m3(a, b):
    x, y = a.encode_multi(TEXTS, role="query"), b.encode_multi(TEXTS, role="query")
    assert np.array_equal(x.dense, y.dense)
    assert all(np.array_equal(u, v) for u, v in zip(x.colbert, y.colbert))
    assert all(np.array_equal(u.indices, v.indices) and np.array_equal(u.values, v.values) for u, v in zip(x.sparse, y.sparse))


def test_m3_unified_with_self_distillation_trains_and_reloads_identically(tmp_path, data):
    out = tmp_path / "m3-out"
    emb, before, after, _ = _train(_args(M3, data, out, "--unified_finetuning", "--use_self_distill",
                                         "--knowledge_distillation", "--kd_loss_type", "m3_kd_loss"))
    assert after < before
    reloaded = load_embedder(str(out), devices="cpu")
    assert type(reloaded).__name__ == "M3Embedder"
    _same_m3(emb, reloaded)
    assert type(FlagAutoModel.from_finetuned(str(out), devices="cpu")).__name__ == "BGEM3FlagModel"


def test_unified_training_turns_a_plain_encoder_into_m3(tmp_path, data):
    out = tmp_path / "bert-m3"
    emb, before, after, model = _train(_args(BERT, data, out, "--unified_finetuning", "--colbert_dim", "16"))
    assert after < before
    reloaded = load_embedder(str(out), devices="cpu")
    assert type(reloaded).__name__ == "M3Embedder" and reloaded.colbert_vector_dim == 16
    _same_dense(emb, reloaded)
    trained = model.heads.state_dict()
    assert all(torch.equal(v, reloaded.heads.state_dict()[k]) for k, v in trained.items())


def test_m3_fix_encoder_trains_only_the_heads(tmp_path, data):
    from bgekit.m3 import M3Embedder

    original = M3Embedder(M3, devices="cpu")
    emb, before, after, _ = _train(_args(M3, data, tmp_path / "fixed", "--unified_finetuning", "--fix_encoder"))
    assert after < before
    assert all(torch.equal(a, b) for a, b in zip(original.model.state_dict().values(), emb.model.state_dict().values()))
    assert not torch.equal(original.heads.colbert.weight, emb.heads.colbert.weight)


def test_icl_training_queries_match_inference_layout(tmp_path):
    from bgekit.compat.embedder import FlagICLModel
    from bgekit.prompts import icl_prefix
    from bgekit.train.collate import EmbedderCollator, IclSettings

    icl = FlagICLModel(DECODER, devices="cpu", use_fp16=False, query_instruction_for_retrieval="Find the answer.")
    col = EmbedderCollator(icl.tokenizer, query_max_len=20, query_instruction_format=icl.query_instruction_format,
                           icl=IclSettings(icl.suffix, icl.examples_instruction_format))
    examples = [{"instruct": "Find the answer.", "query": "what is red", "response": "a colour"}]
    long_query = "a rather long question about pandas and bamboo and forests in china " * 3
    for prefix_examples in (None, examples):
        icl.set_examples(prefix_examples)
        prefix = icl_prefix(prefix_examples, icl.examples_instruction_format, "Find the answer.")
        ours = icl.tokenizer(col.icl_query(long_query, "Find the answer.", prefix))["input_ids"]
        assert ours == icl._tokenize_icl([long_query], 20, "Find the answer.")[0]["input_ids"]


def test_icl_examples_come_from_other_queries_of_the_batch():
    from transformers import AutoTokenizer

    from bgekit.train.collate import EmbedderCollator, IclSettings
    from bgekit.train.data import TrainGroup

    tok = AutoTokenizer.from_pretrained(DECODER)
    col = EmbedderCollator(tok, query_max_len=64, query_instruction_format="<instruct>{}\n<query>{}", icl=IclSettings())
    groups = [TrainGroup(f"question {w}", [f"answer {w}", "other"], None, "Answer it.", None, None, False)
              for w in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")]
    first = col(groups)["queries"][0]["input_ids"]
    assert torch.equal(first, col(groups)["queries"][0]["input_ids"])  # deterministic per batch
    texts = tok.batch_decode(first, skip_special_tokens=True)
    counts = []
    for g, text in zip(groups, texts):
        word = g.query.split()[1]
        assert text.endswith(f"<query>{g.query}\n<response>") and f"answer {word}" not in text
        counts.append(text.count("<response>") - 1)
    assert max(counts) <= 5 and len(set(counts)) > 1


def test_fix_position_embedding_freezes_only_positions(tmp_path, data):
    _, model = build_embedder_training(*_args(BERT, data, tmp_path / "o", "--fix_position_embedding"))
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["model.embeddings.position_embeddings.weight"]
