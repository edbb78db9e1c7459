"""Build and run reranker training from the three argument dataclasses (what ``bgekit train reranker`` does).

The kind comes from ``--model_class`` (or FlagEmbedding's ``--model_type``), else from the model: a reranker
folder keeps its kind; an embedder or plain encoder becomes a cross-encoder with a new score head; a plain
decoder (``*ForCausalLM``) an LLM "Yes"-logit reranker. A layerwise run starts from a published layerwise
checkpoint, or from a raw MiniCPM language model whose new heads start as the "Yes" row of its LM head.
"""
from __future__ import annotations

import logging

from bgekit.train.reranker_args import (MODEL_TYPES, RERANKER_MODEL_CLASSES, RerankerDataArguments,
                                        RerankerModelArguments, RerankerTrainingArguments)

logger = logging.getLogger(__name__)

LORA_TASK_TYPES = {"cross-encoder": "SEQ_CLS", "llm": "CAUSAL_LM", "layerwise": None}


def _forced_kind(model_args: RerankerModelArguments) -> str | None:
    if model_args.model_class is not None:
        return RERANKER_MODEL_CLASSES[model_args.model_class]
    if model_args.model_type in ("from_raw_model", "from_finetuned_model"):
        return "layerwise"
    return MODEL_TYPES.get(model_args.model_type) if model_args.model_type else None


def resolve_reranker_kind(model_args: RerankerModelArguments, path: str):
    """(kind, the ModelSpec to start from, whether the folder already is that kind of reranker)."""
    from bgekit.models import read_config
    from bgekit.registry import (LLM_PASSAGE_INSTRUCTION, LLM_QUERY_INSTRUCTION, ModelSpec, UnknownModelError,
                                 reranker_kind_from_config, resolve_reranker)

    try:
        spec = resolve_reranker(model_args.model_name_or_path, folder=path)
    except (UnknownModelError, ValueError):
        spec = None  # an embedder or a plain language model: it gets a new score head
    config = read_config(path)
    kind = _forced_kind(model_args) or (spec.kind if spec is not None else None)
    if kind is None:
        archs = config.get("architectures") or []
        kind = "llm" if any(a.endswith("ForCausalLM") for a in archs) else "cross-encoder"
        logger.info("%s is not a reranker: training it as a new %s", model_args.model_name_or_path, kind)
    if kind not in RERANKER_MODEL_CLASSES.values():
        raise ValueError(f"{model_args.model_name_or_path!r} is a {kind} reranker; trainable kinds: "
                         f"{', '.join(RERANKER_MODEL_CLASSES.values())}")
    is_reranker = reranker_kind_from_config(config) == kind
    if spec is None or spec.kind != kind:
        llm = kind != "cross-encoder"
        spec = ModelSpec(kind, query_instruction=LLM_QUERY_INSTRUCTION if llm else None,
                         passage_instruction=LLM_PASSAGE_INSTRUCTION if llm else None,
                         trust_remote_code=bool(spec and spec.trust_remote_code))
    return kind, spec, is_reranker


def load_reranker_model(kind: str, path: str, model_args: RerankerModelArguments, remote: bool, is_reranker: bool,
                        tokenizer):
    """The fp32 model to train for ``kind``."""
    import torch

    if kind == "layerwise":
        from bgekit.models import load_pretrained

        if model_args.attn_implementation:
            raise ValueError("--attn_implementation applies to transformers models; layerwise rerankers use SDPA")
        if is_reranker and model_args.model_type != "from_raw_model":
            return load_pretrained(path, torch.float32, "minicpm")
        return raw_layerwise(path, model_args, tokenizer)
    import transformers

    options = {"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}
    if kind == "cross-encoder":
        return transformers.AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=torch.float32, trust_remote_code=remote, **options)
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=remote,
                                                             **options)


def raw_layerwise(path: str, model_args: RerankerModelArguments, tokenizer):
    """A layerwise reranker from a raw MiniCPM language model: its backbone, and score heads (one per layer from
    ``start_layer``, or one shared) that start as the LM head's "Yes" row."""
    import torch

    from bgekit.models import load_state_dict, read_config
    from bgekit.models.minicpm_layerwise import LayerwiseMiniCPM

    config = dict(read_config(path), start_layer=model_args.start_layer, head_multi=model_args.head_multi,
                  head_type=model_args.head_type)
    if config.get("model_type") != "minicpm":
        raise ValueError(f"layerwise training needs a MiniCPM model; {path!r} is a {config.get('model_type')!r} model")
    state = load_state_dict(path, torch.float32)
    lm_head = state.pop("lm_head.weight", None)
    if lm_head is None:
        lm_head = state["model.embed_tokens.weight"]  # tied embeddings
    state = {k: v for k, v in state.items() if k.startswith("model.")}
    model = LayerwiseMiniCPM(config)
    if not 0 <= model.start_layer <= model.num_layers:
        raise ValueError(f"--start_layer {model.start_layer} must be in [0, {model.num_layers}]")
    yes = lm_head[tokenizer("Yes", add_special_tokens=False)["input_ids"][0]]  # (H,)
    with torch.no_grad():
        for head in model.lm_head if model.head_multi else [model.lm_head]:
            head.linear_head.weight.copy_(yes[None])  # (1, H)
    missing, unexpected = model.model.load_state_dict({k[len("model."):]: v for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise ValueError(f"{path!r} does not hold MiniCPM weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def _instructions(data_args: RerankerDataArguments, spec) -> dict:
    if data_args.no_instructions:
        q = p = None
    else:
        q = data_args.query_instruction_for_rerank if data_args.query_instruction_for_rerank is not None else spec.query_instruction
        p = data_args.passage_instruction_for_rerank if data_args.passage_instruction_for_rerank is not None else spec.passage_instruction
    return dict(query_instruction=q, query_instruction_format=data_args.query_instruction_format,
                passage_instruction=p, passage_instruction_format=data_args.passage_instruction_format)


def build_reranker_training(model_args: RerankerModelArguments, data_args: RerankerDataArguments,
                            training_args: RerankerTrainingArguments):
    """Everything a training run needs: returns ``(trainer, train_model)``."""
    import dataclasses

    from transformers import PretrainedConfig, set_seed

    from bgekit import backends
    from bgekit.train.data import GroupDataset, load_sources
    from bgekit.train.lora import lora_config
    from bgekit.train.reranker import RerankerCollator, RerankerTrainModel
    from bgekit.train.sampler import GroupBatchSampler
    from bgekit.train.trainer import GroupTrainer

    set_seed(training_args.seed)
    path = backends.locate(model_args.model_name_or_path, model_args.cache_dir)
    kind, spec, is_reranker = resolve_reranker_kind(model_args, path)
    remote = spec.trust_remote_code if model_args.trust_remote_code is None else model_args.trust_remote_code
    extra = {"config": PretrainedConfig()} if kind == "layerwise" else {}  # transformers does not know minicpm
    tokenizer = backends.load_tokenizer(path, trust_remote_code=remote, **extra)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    model = load_reranker_model(kind, path, model_args, remote, is_reranker, tokenizer)
    from bgekit.train.adapters import prepare_base
    from bgekit.train.run import _adapter_or

    model = prepare_base(model, tokenizer, model_args)
    layers = _layers(model, model_args.cutoff_layers) if kind == "layerwise" else None
    use_lora = model_args.use_lora if model_args.use_lora is not None else kind == "llm"
    lora = None
    if use_lora:
        # layerwise: its score heads (each lm_head entry wraps a `linear_head`) train fully beside LoRA
        to_save = model_args.modules_to_save or (["linear_head"] if kind == "layerwise" else None)
        lora = lora_config(model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout,
                           model_args.target_modules, to_save, task_type=LORA_TASK_TYPES[kind])
    lora = _adapter_or(lora, model_args)
    instructions = _instructions(data_args, spec)
    saved = dataclasses.replace(spec, **instructions, trust_remote_code=remote, max_length=data_args.max_length,
                                extra={**spec.extra, "query_max_length": data_args.query_max_len})
    train_model = RerankerTrainModel(model, tokenizer, saved, lora, layers, training_args.layerwise_self_distill)
    if model_args.from_peft:
        from bgekit.train.adapters import load_adapter_weights

        load_adapter_weights(train_model.model, model_args.from_peft)
    sources = load_sources(data_args.train_data, data_args.knowledge_distillation, data_args.max_example_num_per_dataset,
                           seed=training_args.seed)
    dataset = GroupDataset(sources, data_args.train_group_size, training_args.seed,
                           use_scores=data_args.knowledge_distillation, shuffle_ratio=data_args.shuffle_ratio)
    sampler = GroupBatchSampler(dataset, training_args.per_device_train_batch_size, seed=training_args.seed,
                                drop_last=training_args.dataloader_drop_last, world_size=training_args.world_size)
    collator = RerankerCollator(tokenizer, kind, data_args.max_length, data_args.query_max_len,
                                pad_to_multiple_of=data_args.pad_to_multiple_of,
                                sub_batch_size=training_args.sub_batch_size, **instructions)
    trainer = GroupTrainer(train_model, training_args, dataset, collator, sampler, processing_class=tokenizer)
    return trainer, train_model


def _layers(model, wanted: list[int] | None) -> list[int]:
    valid = model.valid_layers()
    layers = sorted(set(wanted)) if wanted else valid
    bad = [x for x in layers if x not in valid]
    if bad:
        raise ValueError(f"--cutoff_layers {bad} have no score head; valid: {valid}")
    return layers


def train_reranker(model_args: RerankerModelArguments, data_args: RerankerDataArguments,
                   training_args: RerankerTrainingArguments):
    """Train, save the final model into ``output_dir`` and return the trained model (in memory, eval mode).

    Example:
        >>> from bgekit.train.reranker_args import parse_reranker_args
        >>> train_reranker(*parse_reranker_args(["--model", "all-MiniLM-L6-v2", "--train_data", "train.jsonl",
        ...                                      "--output_dir", "out"]))   # doctest: +SKIP
    """
    from bgekit.train.run import _link_merged, fit

    if model_args.only_merge_lora_model:
        raise ValueError("--only_merge_lora_model is an option of FlagEmbedding's decoder-only embedder scripts; a "
                         "LoRA reranker run already saves the merged model in output_dir (and merged_model/ with "
                         "--save_merged_lora_model)")
    model = fit(build_reranker_training, model_args, data_args, training_args)
    _link_merged(model_args, training_args)
    return model
