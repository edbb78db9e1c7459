"""FlagEmbedding's fine-tuning command lines through ``bgekit.finetune.<path>``.

Each script of FlagEmbedding's ``examples/finetune`` runs with its own options on the golden tiny checkpoints
and the example data, for one optimizer step (``--max_steps 1`` instead of the epochs); ``--deepspeed``,
``--fp16`` and ``--use_flash_attn True`` (GPU-only here) are left out of those runs and checked to be refused
with the reason. The saved folders are loaded back with the FlagEmbedding-named classes. The LoRA options
(``--from_peft``, ``--raw_peft``, ``--only_merge_lora_model``, ``--save_merged_lora_model``) and the merge
helpers are checked by equality of outputs; one run goes through a real ``torchrun -m`` process.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bgekit.compat.embedder import FlagAutoModel
from bgekit.compat.reranker import FlagAutoReranker
from bgekit.finetune.cli import main, parse
from golden import GOLDEN

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = GOLDEN / "models"
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "finetune-examples")
EMB_DATA = [f"{DATA}/embedder/retrieval", f"{DATA}/embedder/sts/sts.jsonl",
            f"{DATA}/embedder/classification-no_in_batch_neg", f"{DATA}/embedder/clustering-no_in_batch_neg"]
GPU_ONLY = ["--fp16", "--deepspeed", "../../ds_stage0.json"]   # in every script; refused here (asserted below)
TEXTS = ["what is a panda?", "The giant panda is a bear native to China."]


def _training(out, lr, extra=()):
    """The training_args block the scripts share (epochs -> one step, no DeepSpeed / fp16)."""
    return ["--output_dir", str(out), "--overwrite_output_dir", "--learning_rate", lr, "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--dataloader_drop_last", "True", "--warmup_ratio", "0.1",
            "--gradient_checkpointing", "--logging_steps", "1", "--save_steps", "1000", "--report_to", "none", *extra]


def embedder_script(kind, out, kd=False, same=False):
    """examples/finetune/embedder/{encoder_only,decoder_only}/*.sh with the golden checkpoints."""
    model = {"base": "bert-embedder", "m3": "m3", "decoder": "decoder-embedder", "icl": "decoder-embedder"}[kind]
    argv = ["--model_name_or_path", str(MODELS / model), "--cache_dir", str(out) + "-hub"]
    if kind in ("decoder", "icl"):
        argv += ["--use_lora", "True", "--lora_rank", "32", "--lora_alpha", "64", "--target_modules", "q_proj", "k_proj",
                 "v_proj", "o_proj", "gate_proj", "down_proj", "up_proj", "--additional_special_tokens", "<instruct>",
                 "<query>", *(["<response>"] if kind == "icl" else []), "--save_merged_lora_model", "True"]
    # FlagEmbedding's *_same_dataset.sh distil with teacher scores that only the retrieval files carry; it trains the
    # other files without distillation, bgekit refuses them (file:line named; test_distillation_needs_scores)
    argv += ["--train_data", *(EMB_DATA[:1] if kd else EMB_DATA), "--cache_path", str(out) + "-cache", "--train_group_size", "8",
             "--query_max_len", "2048" if kind == "icl" else "512", "--passage_max_len", "512", "--pad_to_multiple_of", "8"]
    if kind == "base":
        argv += ["--query_instruction_for_retrieval", "Represent this sentence for searching relevant passages: ",
                 "--query_instruction_format", "{}{}"]
    if kind in ("decoder", "icl"):
        argv += ["--query_instruction_for_retrieval", "Given a query, retrieve passages that are relevant to the query.",
                 "--query_instruction_format", "<instruct>{}\\n<query>{}"]
    argv += ["--knowledge_distillation", str(kd)]
    if same:
        argv += ["--same_dataset_within_batch", "True", "--small_threshold", "0", "--drop_threshold", "0"]
    if kind == "icl":
        argv += ["--example_query_max_len", "256", "--example_passage_max_len", "256", "--retrieval_use_examples", "True",
                 "--icl_suffix_str", "\\n<response>"]
    pooling = "last_token" if kind in ("decoder", "icl") else "cls"
    loss = "m3_kd_loss" if kind in ("m3", "decoder") else "kl_div"
    argv += _training(out, "1e-4" if kind in ("decoder", "icl") else "1e-5",
                      ["--negatives_cross_device", "--temperature", "0.02", "--sentence_pooling_method", pooling,
                       "--normalize_embeddings", "True", "--kd_loss_type", loss])
    if kind == "m3":
        argv += ["--unified_finetuning", "True", "--use_self_distill", "True", "--fix_encoder", "False",
                 "--self_distill_start_step", "0"]
    return argv


def reranker_script(kind, out):
    """examples/finetune/reranker/*/*.sh with the golden checkpoints (``--use_flash_attn True`` left out)."""
    model = {"encoder": "bert-reranker", "decoder": "llm-reranker", "layerwise": "layerwise-reranker"}[kind]
    argv = ["--model_name_or_path", str(MODELS / model), "--cache_dir", str(out) + "-hub"]
    if kind != "encoder":
        argv += ["--use_lora", "True", "--lora_rank", "32", "--lora_alpha", "64", "--target_modules", "q_proj", "k_proj",
                 "v_proj", "o_proj", "--save_merged_lora_model", "True", "--model_type", "decoder"]
    if kind == "layerwise":
        argv += ["--model_type", "from_finetuned_model", "--start_layer", "8", "--head_multi", "True", "--head_type",
                 "simple", "--trust_remote_code", "True"]
    data = "normal" if kind == "encoder" else "prompt_based"
    length = "256" if kind == "encoder" else "512"
    argv += ["--train_data", f"{DATA}/reranker/{data}/examples.jsonl", "--cache_path", str(out) + "-cache",
             "--train_group_size", "8", "--query_max_len", length, "--passage_max_len", length, "--pad_to_multiple_of", "8",
             "--knowledge_distillation", "True"]
    if kind != "encoder":
        argv += ["--query_instruction_for_rerank", "A: ", "--query_instruction_format", "{}{}",
                 "--passage_instruction_for_rerank", "B: ", "--passage_instruction_format", "{}{}"]
    extra = ["--gradient_accumulation_steps", "1", "--weight_decay", "0.01"] + ([] if kind == "encoder" else ["--bf16"])
    argv += _training(out, "6e-5" if kind == "encoder" else "2e-4", extra)
    if kind == "layerwise":  # bgekit's layerwise model has no activation checkpointing: refused (asserted below)
        argv.remove("--gradient_checkpointing")
    return argv


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Output folders of runs shared by several tests, trained on first use."""
    root = tmp_path_factory.mktemp("ft")
    made = {}

    def get(name):
        if name not in made:
            out = root / name
            module, argv = {"decoder": ("embedder.decoder_only.base", embedder_script("decoder", out)),
                            "llm": ("reranker.decoder_only.base", reranker_script("decoder", out)),
                            "layerwise": ("reranker.decoder_only.layerwise", reranker_script("layerwise", out))}[name]
            assert main(module, argv) == 0
            made[name] = out
        return made[name]

    return get


def _embed(path):
    out = FlagAutoModel.from_finetuned(str(path), devices="cpu", use_fp16=False).encode(TEXTS)
    return out["dense_vecs"] if isinstance(out, dict) else out


@pytest.mark.parametrize("module, kind, kd, same", [
    ("embedder.encoder_only.base", "base", False, False),        # encoder_only/base.sh
    ("embedder.encoder_only.base", "base", True, True),          # encoder_only/base_same_dataset.sh
    ("embedder.encoder_only.m3", "m3", False, False),            # encoder_only/m3.sh
    ("embedder.encoder_only.m3", "m3", True, True),              # encoder_only/m3_same_dataset.sh
    ("embedder.decoder_only.base", "decoder", True, True),       # decoder_only/base_same_dataset.sh
    ("embedder.decoder_only.icl", "icl", True, True),            # decoder_only/icl_same_dataset.sh
])
def test_embedder_scripts(tmp_path, module, kind, kd, same):
    out = tmp_path / "out"
    assert main(module, embedder_script(kind, out, kd, same)) == 0
    model = FlagAutoModel.from_finetuned(str(out), devices="cpu", use_fp16=False)
    dense = model.encode(TEXTS)
    assert np.isfinite(np.asarray(dense["dense_vecs"] if isinstance(dense, dict) else dense)).all()
    spec = json.loads((out / "bgekit_spec.json").read_text())
    assert spec["kind"] == {"base": "encoder", "m3": "m3", "decoder": "decoder", "icl": "icl"}[kind]
    if kind == "m3":
        out_m3 = model.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
        assert len(out_m3["lexical_weights"]) == 2 and len(out_m3["colbert_vecs"]) == 2
    if kind in ("decoder", "icl"):
        tokens = ["<instruct>", "<query>"] + (["<response>"] if kind == "icl" else [])
        vocab = json.loads((out / "tokenizer.json").read_text())["added_tokens"]
        assert set(tokens) <= {t["content"] for t in vocab}                 # --additional_special_tokens
        assert spec["query_instruction_format"] == "<instruct>{}\n<query>{}"
        np.testing.assert_allclose(_embed(out / "merged_model"), _embed(out), rtol=1e-6, atol=1e-6)
    if kind == "icl":
        assert spec["extra"]["icl_suffix"] == "\n<response>"


def test_decoder_base_script_and_lora_options(runs, tmp_path):
    """decoder_only/base.sh, then --only_merge_lora_model, --from_peft and --raw_peft on its adapter."""
    out = runs("decoder")
    trained = _embed(out)
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "merged_model" / "model.safetensors").is_file()

    # --only_merge_lora_model: no training; the adapter in output_dir merged into merged_model/
    merged_only = tmp_path / "merge"
    shutil.copytree(out / "adapter", merged_only / "adapter")
    argv = ["--model_name_or_path", str(MODELS / "decoder-embedder"), "--additional_special_tokens", "<instruct>", "<query>",
            "--train_data", *EMB_DATA, "--query_instruction_format", "<instruct>{}\\n<query>{}",
            "--output_dir", str(merged_only), "--only_merge_lora_model", "True", "--report_to", "none"]
    assert main("embedder.decoder_only.base", argv) == 0
    np.testing.assert_allclose(_embed(merged_only / "merged_model"), trained, rtol=1e-5, atol=1e-5)

    # --from_peft continues that adapter (learning rate 0: the weights stay as loaded)
    base = ["--model_name_or_path", str(MODELS / "decoder-embedder"), "--additional_special_tokens", "<instruct>", "<query>",
            "--train_data", *EMB_DATA, "--query_instruction_format", "<instruct>{}\\n<query>{}", "--train_group_size", "2",
            "--query_max_len", "32", "--passage_max_len", "32", "--sentence_pooling_method", "last_token"]
    assert main("embedder.decoder_only.base", base + ["--from_peft", str(out / "adapter")] +
                _training(tmp_path / "cont", "0")) == 0
    np.testing.assert_allclose(_embed(tmp_path / "cont"), trained, rtol=1e-5, atol=1e-5)

    # --raw_peft merges it before training (no new LoRA, learning rate 0)
    assert main("embedder.decoder_only.base", base + ["--raw_peft", str(out / "adapter"), "--use_lora", "False"] +
                _training(tmp_path / "raw", "0")) == 0
    np.testing.assert_allclose(_embed(tmp_path / "raw"), trained, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["encoder", "decoder", "layerwise"])
def test_reranker_scripts(runs, tmp_path, kind):
    if kind == "encoder":
        out = tmp_path / "out"
        assert main("reranker.encoder_only.base", reranker_script("encoder", out)) == 0
    else:
        out = runs({"decoder": "llm", "layerwise": "layerwise"}[kind])
        assert (out / "merged_model" / "config.json").is_file()             # --save_merged_lora_model True
    extra = {"cutoff_layers": [3]} if kind == "layerwise" else {}
    reranker = FlagAutoReranker.from_finetuned(str(out), devices="cpu", **extra)
    scores = reranker.compute_score([TEXTS, [TEXTS[0], "bamboo"]])
    assert len(scores) == 2 and np.isfinite(scores).all()


def test_merge_helpers_give_the_trained_models(runs, tmp_path):
    from bgekit.finetune.merge import merge_layerwise_finetuned_llm, merge_llm

    pairs = [TEXTS, [TEXTS[0], "bamboo"]]
    llm = runs("llm")
    merge_llm(str(MODELS / "llm-reranker"), str(llm / "adapter"), str(tmp_path / "llm"))
    np.testing.assert_allclose(FlagAutoReranker.from_finetuned(str(tmp_path / "llm"), devices="cpu").compute_score(pairs),
                               FlagAutoReranker.from_finetuned(str(llm), devices="cpu").compute_score(pairs), atol=1e-4)
    layerwise = runs("layerwise")
    merge_layerwise_finetuned_llm(str(MODELS / "layerwise-reranker"), str(layerwise / "adapter"), str(tmp_path / "lw"))
    load = lambda p: FlagAutoReranker.from_finetuned(str(p), devices="cpu", cutoff_layers=[3]).compute_score(pairs)  # noqa: E731
    np.testing.assert_allclose(load(tmp_path / "lw"), load(layerwise), atol=1e-4)
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter folder"):
        merge_llm(str(MODELS / "llm-reranker"), str(tmp_path), str(tmp_path / "x"))


def test_merge_layerwise_raw_llm(tmp_path):
    """A layerwise run from a raw MiniCPM model (new heads in the adapter) merges back into the same scores."""
    import torch
    from safetensors.torch import load_file, save_file

    from bgekit.finetune.merge import merge_layerwise_raw_llm

    raw = tmp_path / "raw-minicpm"
    shutil.copytree(MODELS / "layerwise-reranker", raw)
    for path in [raw, *raw.iterdir()]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    config = json.loads((raw / "config.json").read_text())
    for key in ("head_multi", "head_type", "start_layer"):
        config.pop(key)
    config["architectures"] = ["MiniCPMForCausalLM"]
    (raw / "config.json").write_text(json.dumps(config))
    state = {k: v for k, v in load_file(str(raw / "model.safetensors")).items() if k.startswith("model.")}
    state["lm_head.weight"] = torch.randn(config["vocab_size"], config["hidden_size"], generator=torch.Generator().manual_seed(0))
    save_file(state, str(raw / "model.safetensors"))
    argv = reranker_script("layerwise", tmp_path / "out")
    argv[argv.index("--model_name_or_path") + 1] = str(raw)
    argv[argv.index("from_finetuned_model")] = "from_raw_model"
    argv[argv.index("--start_layer") + 1] = "2"
    assert main("reranker.decoder_only.layerwise", argv) == 0
    merge_layerwise_raw_llm(str(raw), str(tmp_path / "out" / "adapter"), str(tmp_path / "merged"))
    pairs = [TEXTS, [TEXTS[0], "bamboo"]]
    load = lambda p: FlagAutoReranker.from_finetuned(str(p), devices="cpu", cutoff_layers=[3]).compute_score(pairs)  # noqa: E731
    np.testing.assert_allclose(load(tmp_path / "merged"), load(tmp_path / "out"), atol=1e-4)


def test_distillation_needs_scores_in_every_file(tmp_path, capsys):
    argv = embedder_script("base", tmp_path / "o", kd=True, same=True)
    start = argv.index("--train_data") + 1
    argv[start:start + 1] = EMB_DATA
    assert main("embedder.encoder_only.base", argv) == 3                    # an input error (bgekit.errors)
    assert "sts.jsonl:1: knowledge distillation needs 'pos_scores'" in capsys.readouterr().err


def test_gpu_only_options_are_refused_with_the_reason(tmp_path, capsys):
    base = embedder_script("base", tmp_path / "o")
    for extra, message in [
        (GPU_ONLY[1:], "--deepspeed ../../ds_stage0.json: DeepSpeed runs on GPUs and this machine has none"),
        (GPU_ONLY[:1], "--fp16: fp16 mixed precision needs a GPU"),
        (["--use_flash_attn", "True"], "--use_flash_attn: flash_attention_2 runs on CUDA GPUs only"),
        (["--model_class", "decoder-only-base"], "--model_class: bgekit.finetune.embedder.encoder_only.base trains encoder-only-base"),
        (["--use_fast_tokenizer", "False"], "bgekit trains and encodes with the fast tokenizer only"),
        (["--tokenizer_name", "other/tokenizer"], "--tokenizer_name 'other/tokenizer': bgekit reads the config and tokenizer"),
        (["--from_peft", str(tmp_path)], "no adapter_config.json there"),   # an input error: exit code 3
    ]:
        assert main("embedder.encoder_only.base", base + extra) == (3 if "--from_peft" in extra else 2)
        assert message in capsys.readouterr().err
    assert main("reranker.encoder_only.base", reranker_script("encoder", tmp_path / "r") + ["--use_flash_attn", "True"]) == 2
    assert "flash_attention_2 runs on CUDA GPUs only" in capsys.readouterr().err
    assert main("reranker.decoder_only.layerwise", reranker_script("layerwise", tmp_path / "r") + ["--gradient_checkpointing"]) == 2
    assert "--gradient_checkpointing is not supported for layerwise rerankers" in capsys.readouterr().err
    assert main("embedder.encoder_only.base", base + ["--save_merged_lora_model", "True"]) == 2
    assert "--save_merged_lora_model: this run trains no LoRA adapter" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# FlagEmbedding 1.4.2's fine-tuning argument fields (read from its dataclasses), per module
EMBEDDER_FIELDS = {"model_name_or_path", "config_name", "tokenizer_name", "cache_dir", "trust_remote_code", "use_fast_tokenizer",
                   "token", "train_data", "cache_path", "train_group_size", "query_max_len", "passage_max_len",
                   "pad_to_multiple_of", "max_example_num_per_dataset", "query_instruction_for_retrieval",
                   "query_instruction_format", "knowledge_distillation", "passage_instruction_for_retrieval",
                   "passage_instruction_format", "shuffle_ratio", "same_dataset_within_batch", "small_threshold",
                   "drop_threshold", "negatives_cross_device", "temperature", "fix_position_embedding",
                   "sentence_pooling_method", "normalize_embeddings", "sub_batch_size", "kd_loss_type", "use_mrl", "mrl_dims"}
MODULE_FIELDS = {
    "embedder.encoder_only.m3": {"colbert_dim", "unified_finetuning", "use_self_distill", "fix_encoder", "self_distill_start_step"},
    "embedder.decoder_only.base": {"peft_model_path", "use_lora", "lora_rank", "lora_alpha", "lora_dropout", "target_modules",
                                   "use_flash_attn", "use_slow_tokenizer", "from_peft", "modules_to_save", "raw_peft",
                                   "additional_special_tokens", "save_merged_lora_model", "only_merge_lora_model"},
    "embedder.decoder_only.icl": {"example_query_max_len", "example_passage_max_len", "retrieval_use_examples", "icl_suffix_str"},
    "reranker.encoder_only.base": {"model_name_or_path", "config_name", "tokenizer_name", "cache_dir", "trust_remote_code",
                                   "model_type", "use_fast_tokenizer", "token", "train_data", "cache_path", "train_group_size",
                                   "query_max_len", "passage_max_len", "max_len", "pad_to_multiple_of",
                                   "max_example_num_per_dataset", "query_instruction_for_rerank", "query_instruction_format",
                                   "knowledge_distillation", "passage_instruction_for_rerank", "passage_instruction_format",
                                   "shuffle_ratio", "sep_token", "sub_batch_size"},
    "reranker.decoder_only.layerwise": {"use_lora", "lora_rank", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save",
                                        "use_flash_attn", "from_peft", "raw_peft", "save_merged_lora_model", "model_type",
                                        "start_layer", "head_multi", "head_type"},
}


def test_every_flagembedding_finetune_argument_is_accepted():
    import dataclasses

    for module, extra in MODULE_FIELDS.items():
        wanted = (extra | EMBEDDER_FIELDS) if module.startswith("embedder") else extra
        if module == "reranker.decoder_only.layerwise":
            wanted |= MODULE_FIELDS["reranker.encoder_only.base"]
        model, data, training = parse(module, ["--model_name_or_path", str(MODELS / "bert-embedder"), "--train_data",
                                               EMB_DATA[0], "--output_dir", "unused"])
        known = {f.name for args in (model, data, training) for f in dataclasses.fields(args)}
        assert wanted <= known, (module, sorted(wanted - known))
    model, data, training = parse("embedder.decoder_only.icl", ["--model_name_or_path", str(MODELS / "decoder-embedder"),
                                                                "--train_data", EMB_DATA[0], "--output_dir", "unused"])
    # FlagEmbedding's defaults of that module: LoRA, "{}{}" templates, "\nResponse:" as ICL suffix
    assert (model.use_lora, data.query_instruction_format, data.icl_suffix_str, model.model_class) == \
        (True, "{}{}", "\nResponse:", "decoder-only-icl")
    model, data, training = parse("embedder.encoder_only.base", ["--model_name_or_path", str(MODELS / "bert-embedder"),
                                                                 "--train_data", EMB_DATA[0], "--output_dir", "unused"])
    assert (training.sentence_pooling_method, training.temperature, data.train_group_size) == ("cls", 0.02, 8)
    model, data, training = parse("embedder.decoder_only.base", ["--model_name_or_path", str(MODELS / "decoder-embedder"),
                                                                 "--train_data", EMB_DATA[0], "--output_dir", "unused"])
    assert training.sentence_pooling_method is None                       # the model's own (last_token), not cls


def test_token_is_given_to_the_hub_client(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "before")
    parse("embedder.encoder_only.base", ["--model_name_or_path", str(MODELS / "bert-embedder"), "--train_data",
                                         EMB_DATA[0], "--output_dir", "unused", "--token", "hf_secret"])
    assert os.environ["HF_TOKEN"] == "hf_secret"


def test_split_data_by_length(tmp_path):
    from bgekit.finetune.split_data import main as split_main
    from bgekit import backends

    src = f"{DATA}/embedder/retrieval"
    assert split_main(["--input_path", src, "--output_dir", str(tmp_path), "--model_name_or_path", str(MODELS / "m3"),
                       "--length_list", "0", "100", "300", "--num_proc", "1"]) == 0
    tokenizer = backends.load_tokenizer(str(MODELS / "m3"))
    log = [json.loads(line) for line in (tmp_path / ".split_log").read_text().splitlines()]
    assert sorted(r["file_name"] for r in log) == sorted(os.listdir(src))
    for record in log:
        stem = record["file_name"][: -len(".jsonl")]
        assert sum(record["split_info"].values()) == record["size"] == 10
        for label, count in record["split_info"].items():
            lo, hi = label.split("-")[1:]
            path = tmp_path / f"{stem}_{label}.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()] if count else []
            assert len(rows) == count and path.exists() == bool(count)
            for row in rows:
                longest = max(len(tokenizer(t)["input_ids"]) for t in [row["query"], *row["pos"], *row["neg"]])
                assert int(lo) <= longest < float(hi)


def test_torchrun_runs_the_module(tmp_path):
    """One real ``torchrun -m bgekit.finetune.reranker.encoder_only.base`` process (the others run main() in-process)."""
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--nproc_per_node", "1", "-m", "bgekit.finetune.reranker.encoder_only.base",
           *reranker_script("encoder", tmp_path / "out"), "--train_group_size", "2", "--query_max_len", "32",
           "--passage_max_len", "32"]   # the script's options, then smaller groups and lengths: this run is for the path
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "saved the trained model to" in done.stdout
    assert FlagAutoReranker.from_finetuned(str(tmp_path / "out"), devices="cpu").compute_score([TEXTS])


def test_flagembedding_python_names_at_the_module_paths(tmp_path):
    """FlagEmbedding's __main__ in Python: HfArgumentParser over the module's argument classes, then Runner.run()."""
    import pickle

    from transformers import HfArgumentParser

    from bgekit.finetune.embedder.decoder_only.icl import DecoderOnlyEmbedderICLDataArguments
    from bgekit.finetune.embedder.encoder_only.base import (EncoderOnlyEmbedderDataArguments,
                                                            EncoderOnlyEmbedderModelArguments,
                                                            EncoderOnlyEmbedderRunner,
                                                            EncoderOnlyEmbedderTrainingArguments)
    from bgekit.finetune.reranker.decoder_only.layerwise import RerankerModelArguments

    assert DecoderOnlyEmbedderICLDataArguments(train_data=EMB_DATA[:1]).icl_suffix_str == "\nResponse:"
    assert RerankerModelArguments(model_name_or_path="x").model_type == "from_raw_model"
    parser = HfArgumentParser((EncoderOnlyEmbedderModelArguments, EncoderOnlyEmbedderDataArguments,
                               EncoderOnlyEmbedderTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=[
        "--model_name_or_path", str(MODELS / "bert-embedder"), "--train_data", EMB_DATA[0], "--train_group_size", "2",
        "--query_max_len", "16", "--passage_max_len", "16", *_training(tmp_path / "out", "1e-5")])
    assert model_args.model_class == "encoder-only-base" and training_args.sentence_pooling_method == "cls"
    assert pickle.loads(pickle.dumps(training_args)).output_dir == str(tmp_path / "out")
    EncoderOnlyEmbedderRunner(model_args, data_args, training_args).run()
    assert np.isfinite(_embed(tmp_path / "out")).all()
