"""Build and run embedder training from the three argument dataclasses (what ``bgekit train embedder`` does)."""
from __future__ import annotations

import dataclasses
import logging
import os

from bgekit.train.args import MODEL_CLASSES, EmbedderDataArguments, EmbedderModelArguments, EmbedderTrainingArguments

logger = logging.getLogger(__name__)

_TRUE = ("true", "1", "yes", "last")


def resolve_resume(training_args) -> str | None:
    """``--resume_from_checkpoint``: a checkpoint folder, or true/last for the output_dir's last checkpoint."""
    value = training_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "0", "no", "none", ""):
        return None
    if str(value).lower() in _TRUE:
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise ValueError(f"--resume_from_checkpoint {value}: no checkpoint-N folder in {training_args.output_dir!r}")
        return last
    if not os.path.isdir(value):
        raise FileNotFoundError(f"--resume_from_checkpoint {value!r} is not a folder")
    return value


def check_output_dir(training_args, resume: str | None) -> None:
    out = training_args.output_dir
    if os.path.isdir(out) and os.listdir(out) and resume is None and not training_args.overwrite_output_dir:
        raise ValueError(f"output_dir {out!r} is not empty: pass --resume_from_checkpoint true to continue its last "
                         "checkpoint, --overwrite_output_dir to train into it anyway, or use a new folder")


def _kind(model_args: EmbedderModelArguments, training_args: EmbedderTrainingArguments, spec) -> str:
    if training_args.unified_finetuning:
        return "m3"
    if model_args.model_class is not None:
        return MODEL_CLASSES[model_args.model_class]
    if not spec.is_embedder:
        raise ValueError(f"{model_args.model_name_or_path!r} resolves to a {spec.kind} reranker, not an embedder")
    return spec.kind


def _spec_for_kind(spec, kind: str):
    """The resolved spec with the kind forced; a changed kind takes that kind's pooling and query template."""
    from bgekit.registry import ICL_QUERY, INSTRUCT_QUERY

    if spec.kind == kind:
        return spec
    defaults = {"encoder": ("cls", "{}{}"), "m3": ("cls", "{}{}"), "decoder": ("last_token", INSTRUCT_QUERY),
                "icl": ("last_token", ICL_QUERY)}
    pooling, fmt = defaults[kind]
    if spec.is_embedder and (spec.kind in ("encoder", "m3")) == (kind in ("encoder", "m3")):
        pooling = spec.pooling or pooling
    if spec.is_embedder and kind == "m3":
        fmt = spec.query_instruction_format
    return dataclasses.replace(spec, kind=kind, pooling=pooling, query_instruction_format=fmt, extra={})


def load_embedder_for_training(model_args, data_args, training_args):
    """The bgekit embedder to train (fp32 weights) and its M3 heads (None for dense-only kinds)."""
    from bgekit import backends
    from bgekit.encoder import Embedder
    from bgekit.heads import COLBERT_FILE, SPARSE_FILE, M3Heads
    from bgekit.registry import resolve

    path = backends.locate(model_args.model_name_or_path, model_args.cache_dir)
    spec = resolve(model_args.model_name_or_path, folder=path)
    kind = _kind(model_args, training_args, spec)
    spec = _spec_for_kind(spec, kind)
    kwargs = dict(spec=spec, pooling=training_args.sentence_pooling_method, normalize=training_args.normalize_embeddings,
                  query_instruction=data_args.query_instruction_for_retrieval,
                  query_instruction_format=data_args.query_instruction_format,
                  passage_instruction=data_args.passage_instruction_for_retrieval,
                  passage_instruction_format=data_args.passage_instruction_format, devices="cpu", dtype="fp32",
                  query_max_length=data_args.query_max_len, passage_max_length=data_args.passage_max_len,
                  trust_remote_code=model_args.trust_remote_code, cache_dir=model_args.cache_dir)
    if kind == "icl" and data_args.icl_suffix_str is not None:
        kwargs["icl_suffix"] = data_args.icl_suffix_str
        spec = dataclasses.replace(spec, extra={**spec.extra, "icl_suffix": data_args.icl_suffix_str})
        kwargs["spec"] = spec
        logger.warning("--icl_suffix_str %r: pass the same suffix when encoding with the trained model "
                       "(FlagICLModel(..., suffix=...)); the default is %r", data_args.icl_suffix_str, "\n<response>")
    has_heads = all(os.path.isfile(os.path.join(path, f)) for f in (COLBERT_FILE, SPARSE_FILE))
    if kind == "m3" and has_heads:
        from bgekit.m3 import M3Embedder

        emb = M3Embedder(model_name_or_path=model_args.model_name_or_path, colbert_dim=model_args.colbert_dim, **kwargs)
        heads = emb.heads.float().train()
    else:
        emb = Embedder(model_args.model_name_or_path, **kwargs)
        heads = None
        if kind == "m3":
            logger.info("no M3 heads in %s: starting new sparse and ColBERT heads", path)
            heads = M3Heads(emb.model.config.get_text_config().hidden_size, model_args.colbert_dim)
    if model_args.attn_implementation is not None:
        emb.model.set_attn_implementation(model_args.attn_implementation)
    from bgekit.train.adapters import prepare_base

    emb.model = prepare_base(emb.model, emb.tokenizer, model_args)
    tok = emb.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    return emb, heads


def build_embedder_training(model_args: EmbedderModelArguments, data_args: EmbedderDataArguments,
                            training_args: EmbedderTrainingArguments):
    """Everything a training run needs: returns ``(trainer, train_model)`` (the model wraps the embedder)."""
    from transformers import set_seed

    from bgekit.train.collate import EmbedderCollator, IclSettings
    from bgekit.train.data import GroupDataset, load_sources
    from bgekit.train.embedder import EmbedderTrainModel, LossConfig
    from bgekit.train.lora import lora_config
    from bgekit.train.sampler import GroupBatchSampler
    from bgekit.train.trainer import GroupTrainer

    set_seed(training_args.seed)
    emb, heads = load_embedder_for_training(model_args, data_args, training_args)
    use_lora = model_args.use_lora if model_args.use_lora is not None else emb.spec.kind in ("decoder", "icl")
    lora = lora_config(model_args.lora_rank, model_args.lora_alpha, model_args.lora_dropout, model_args.target_modules,
                       model_args.modules_to_save) if use_lora else None
    lora = _adapter_or(lora, model_args)
    config = LossConfig(training_args.temperature, training_args.negatives_cross_device, training_args.kd_loss_type,
                        tuple(training_args.mrl_dims) if training_args.use_mrl else (), training_args.unified_finetuning,
                        training_args.use_self_distill, training_args.self_distill_start_step)
    model = EmbedderTrainModel(emb, config, heads, lora)
    if model_args.from_peft:
        from bgekit.train.adapters import load_adapter_weights

        load_adapter_weights(model.model, model_args.from_peft)
    _freeze(model, training_args)
    sources = load_sources(data_args.train_data, data_args.knowledge_distillation, data_args.max_example_num_per_dataset,
                           data_args.small_threshold, data_args.drop_threshold, training_args.seed)
    if not data_args.same_dataset_within_batch and len({s.no_in_batch_neg for s in sources}) > 1:
        logger.warning("some training files are marked no_in_batch_neg and others not; a mixed batch uses in-batch "
                       "negatives. Pass --same_dataset_within_batch to honour the marks batch by batch.")
    dataset = GroupDataset(sources, data_args.train_group_size, training_args.seed,
                           use_scores=data_args.knowledge_distillation, shuffle_ratio=data_args.shuffle_ratio)
    sampler = GroupBatchSampler(dataset, training_args.per_device_train_batch_size, data_args.same_dataset_within_batch,
                                training_args.seed, training_args.dataloader_drop_last or training_args.negatives_cross_device,
                                training_args.world_size)
    icl = None
    if emb.spec.kind == "icl":
        icl = IclSettings(emb.suffix, emb.examples_instruction_format, data_args.example_query_max_len,
                          data_args.example_passage_max_len, data_args.retrieval_use_examples)
    collator = EmbedderCollator(emb.tokenizer, data_args.query_max_len, data_args.passage_max_len,
                                emb.query_instruction_for_retrieval, emb.query_instruction_format,
                                emb.passage_instruction_for_retrieval, emb.passage_instruction_format,
                                data_args.pad_to_multiple_of, training_args.sub_batch_size, icl, training_args.seed)
    trainer = GroupTrainer(model, training_args, dataset, collator, sampler, processing_class=emb.tokenizer)
    return trainer, model


def _adapter_or(lora, model_args):
    """``--from_peft``: that adapter's LoRA settings; ``--save_merged_lora_model`` needs LoRA at all."""
    if model_args.from_peft:
        from bgekit.train.adapters import lora_from_adapter

        if model_args.use_lora is False:
            raise ValueError("--from_peft continues a LoRA adapter: it contradicts --use_lora False")
        lora = lora_from_adapter(model_args.from_peft)
    if model_args.save_merged_lora_model and lora is None:
        raise ValueError("--save_merged_lora_model: this run trains no LoRA adapter (pass --use_lora True, or leave "
                         "the option out: the trained model is saved whole in output_dir)")
    return lora


def _freeze(model, training_args) -> None:
    if training_args.fix_encoder:
        for p in model.model.parameters():
            p.requires_grad_(False)
    if training_args.fix_position_embedding:
        for name, p in model.model.named_parameters():
            if "position_embeddings" in name:
                p.requires_grad_(False)


def train_embedder(model_args: EmbedderModelArguments, data_args: EmbedderDataArguments,
                   training_args: EmbedderTrainingArguments):
    """Train, save the final model into ``output_dir`` and return the trained embedder (in memory, eval mode).

    Example:
        >>> from bgekit.train.args import parse_embedder_args
        >>> emb = train_embedder(*parse_embedder_args(["--model", "all-MiniLM-L6-v2", "--train_data", "train.jsonl",
        ...                                            "--output_dir", "out"]))   # doctest: +SKIP
    """
    if model_args.only_merge_lora_model:
        return merge_only(model_args, data_args, training_args)
    model = fit(build_embedder_training, model_args, data_args, training_args)
    _link_merged(model_args, training_args)
    return model.finish()


def _link_merged(model_args, training_args) -> None:
    if model_args.save_merged_lora_model and training_args.process_index == 0:
        from bgekit.train.adapters import link_merged

        link_merged(training_args.output_dir)


def merge_only(model_args, data_args, training_args):
    """``--only_merge_lora_model``: merge the adapter found in ``output_dir`` and save ``output_dir/merged_model``."""
    from bgekit.train.adapters import find_adapter, merge_adapter
    from bgekit.train.embedder import EmbedderTrainModel, LossConfig

    adapter = find_adapter(training_args.output_dir)
    emb, heads = load_embedder_for_training(model_args, data_args, training_args)
    emb.model = merge_adapter(emb.model, adapter)
    model = EmbedderTrainModel(emb, LossConfig(training_args.temperature), heads)
    if training_args.process_index == 0:
        model.save_to(os.path.join(training_args.output_dir, "merged_model"))
    logger.info("merged %s into %s", adapter, os.path.join(training_args.output_dir, "merged_model"))
    return model.finish()


def fit(build, model_args, data_args, training_args):
    """The run every trainer shares: check ``output_dir``, find the checkpoint to resume, ``build(...)`` the
    (trainer, model) pair, train, save the final model crash-safely; return the model."""
    if not training_args.output_dir:
        raise ValueError("--output_dir is required")
    resume = resolve_resume(training_args)
    check_output_dir(training_args, resume)
    trainer, model = build(model_args, data_args, training_args)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    return model
