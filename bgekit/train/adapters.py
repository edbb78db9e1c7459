"""FlagEmbedding's LoRA and tokenizer options of fine-tuning, on bgekit's training run.

- ``--raw_peft A [B ...]``: adapter folders merged into the model before training (with FlagEmbedding's
  ``embedding/emb.pth`` input embeddings when the folder has one), after ``--additional_special_tokens``.
- ``--from_peft DIR`` (or ``--peft_model_path DIR``): train that adapter further instead of a new one; its
  LoRA settings (rank, alpha, target modules) come from its ``adapter_config.json``.
- ``--additional_special_tokens T ...``: added to the tokenizer; the input embeddings grow to match.
- ``--only_merge_lora_model``: no training; the adapter saved in ``output_dir`` (FlagEmbedding's place, bgekit's
  ``output_dir/adapter``, or the last ``checkpoint-N``) is merged and saved to ``output_dir/merged_model``.
- ``--save_merged_lora_model``: the merged model bgekit saves in ``output_dir`` is also linked into
  ``output_dir/merged_model``.
- ``--use_flash_attn``: flash_attention_2, where CUDA and the flash-attn package exist; refused otherwise.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"


def check_model_options(args) -> None:
    """Validate (and normalise) the FlagEmbedding model options before anything is loaded."""
    for name in ("config_name", "tokenizer_name"):
        value = getattr(args, name)
        if value and os.path.normpath(value) != os.path.normpath(args.model_name_or_path):
            raise ValueError(f"--{name} {value!r}: bgekit reads the config and tokenizer from the model itself "
                             f"({args.model_name_or_path!r}); leave --{name} out")
    if not args.use_fast_tokenizer or args.use_slow_tokenizer:
        raise ValueError("--use_fast_tokenizer False / --use_slow_tokenizer True: bgekit trains and encodes with "
                         "the fast tokenizer only, so a slow one would tokenise differently from inference")
    if args.token:
        os.environ["HF_TOKEN"] = args.token  # huggingface_hub reads it for downloads
    if args.peft_model_path:
        if args.from_peft and os.path.normpath(args.from_peft) != os.path.normpath(args.peft_model_path):
            raise ValueError(f"--peft_model_path {args.peft_model_path!r} and --from_peft {args.from_peft!r} differ; "
                             "pass one adapter to continue training")
        args.from_peft = args.peft_model_path
    for name, folders in (("from_peft", [args.from_peft] if args.from_peft else []), ("raw_peft", args.raw_peft or [])):
        for folder in folders:
            if not os.path.isfile(os.path.join(folder, ADAPTER_CONFIG)):
                raise FileNotFoundError(f"--{name} {folder!r}: no {ADAPTER_CONFIG} there (not a LoRA adapter folder)")
    if args.use_flash_attn:
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--use_flash_attn: flash_attention_2 runs on CUDA GPUs only and this machine has none; "
                             "drop it (or choose --attn_implementation sdpa / eager)")
        if importlib.util.find_spec("flash_attn") is None:
            raise ImportError("--use_flash_attn needs the flash-attn package: pip install flash-attn")
        if args.attn_implementation not in (None, "flash_attention_2"):
            raise ValueError(f"--use_flash_attn contradicts --attn_implementation {args.attn_implementation}")
        args.attn_implementation = "flash_attention_2"


def _load_embeddings(model, folder: str) -> None:
    """FlagEmbedding saves grown input embeddings as ``embedding/emb.pth`` beside an adapter."""
    import torch

    path = os.path.join(folder, "embedding", "emb.pth")
    if os.path.isfile(path):
        model.set_input_embeddings(torch.load(path, weights_only=False))
        model.config.vocab_size = model.get_input_embeddings().weight.shape[0]


def merge_adapter(model, folder: str):
    """``model`` with the LoRA adapter in ``folder`` merged in (a plain transformers model again)."""
    from peft import PeftModel

    _load_embeddings(model, folder)
    return PeftModel.from_pretrained(model, folder).merge_and_unload()


def prepare_base(model, tokenizer, model_args):
    """Apply ``--additional_special_tokens``, then ``--raw_peft`` merges; returns the model to train.

    The tokens come first so that an adapter saved with grown embeddings (peft stores them when a run added
    tokens) fits; FlagEmbedding's ``embedding/emb.pth`` replaces the input embeddings either way.
    """
    tokens = model_args.additional_special_tokens
    if tokens:
        added = tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)})
        if added:
            model.resize_token_embeddings(len(tokenizer))
            logger.info("added %d special token(s) %s; input embeddings now %d rows", added, tokens, len(tokenizer))
        else:
            logger.warning("special tokens %s are already in the tokenizer", tokens)
    for folder in model_args.raw_peft or []:
        logger.info("merging LoRA adapter %s into the model before training", folder)
        model = merge_adapter(model, folder)
    return model


def lora_from_adapter(folder: str):
    """The trainable ``LoraConfig`` of a saved adapter (for ``--from_peft``)."""
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(folder)
    config.inference_mode = False
    return config


def load_adapter_weights(peft_model, folder: str) -> None:
    """Put the weights of the adapter in ``folder`` into a freshly wrapped ``peft_model``."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    _load_embeddings(peft_model.get_base_model(), folder)
    result = set_peft_model_state_dict(peft_model, load_peft_weights(folder, device="cpu"))
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise ValueError(f"--from_peft {folder!r}: its weights do not fit this model ({missing[:3]} ...)")


def find_adapter(output_dir: str) -> str:
    """The adapter to merge for ``--only_merge_lora_model``: in output_dir, output_dir/adapter, or the last checkpoint."""
    candidates = [output_dir, os.path.join(output_dir, "adapter")]
    if os.path.isdir(output_dir):
        steps = sorted((int(m.group(1)), n) for n in os.listdir(output_dir) if (m := re.fullmatch(r"checkpoint-(\d+)", n)))
        for _, name in reversed(steps):
            candidates += [os.path.join(output_dir, name), os.path.join(output_dir, name, "adapter")]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, ADAPTER_CONFIG)):
            return folder
    raise FileNotFoundError(f"--only_merge_lora_model: no LoRA adapter ({ADAPTER_CONFIG}) in {output_dir!r}, its "
                            "adapter/ folder or its checkpoint-N folders; train with LoRA first")


def link_merged(output_dir: str) -> str:
    """Hard-link (copy where links fail) the saved model files of ``output_dir`` into ``output_dir/merged_model``."""
    import shutil

    target = os.path.join(output_dir, "merged_model")
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(output_dir):
        src = os.path.join(output_dir, name)
        if not os.path.isfile(src) or name.startswith(".") or name in ("trainer_state.json", "training_args.bin"):
            continue
        dst = os.path.join(target, name)
        if os.path.exists(dst):
            os.remove(dst)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return target
