"""LoRA (via peft) for embedder and reranker training: configuration and merged weights without merging in place.

A LoRA model is saved as plain merged weights (``W + scale * B @ A`` for every adapted Linear), computed from a
state dict, so the live model keeps training and a DeepSpeed-gathered state dict works as well.
"""
from __future__ import annotations

import torch
from bgekit.errors import positive_int

ADAPTER = "default"
_BASE = "base_model.model."


def lora_config(rank: int, alpha: float, dropout: float, target_modules: list[str],
                modules_to_save: list[str] | None = None, task_type: str = "FEATURE_EXTRACTION"):
    """A ``peft.LoraConfig`` (FlagEmbedding's lora_rank / lora_alpha / lora_dropout / target_modules)."""
    from peft import LoraConfig

    positive_int(rank, "lora_rank")
    if not target_modules:
        raise ValueError("target_modules must name at least one Linear layer (e.g. q_proj v_proj)")
    return LoraConfig(task_type=task_type, r=rank, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=list(target_modules), modules_to_save=modules_to_save, inference_mode=False)


def lora_layers(peft_model) -> dict[str, tuple[float, bool]]:
    """Adapted module path -> (scaling, fan_in_fan_out). Raises ValueError for non-Linear or DoRA layers."""
    from peft.tuners.lora import Linear, LoraLayer

    out = {}
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, LoraLayer):
            if not isinstance(module, Linear) or module.use_dora.get(ADAPTER, False):
                raise ValueError(f"LoRA on {name} ({type(module).__name__}) is not supported; target Linear layers only")
            out[name] = (module.scaling[ADAPTER], module.fan_in_fan_out)
    return out


def merged_state_dict(peft_model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The base model's state dict with every adapter merged in.

    Args:
        peft_model: the ``PeftModel`` (for each layer's scaling).
        state_dict: the PeftModel's state dict (live, or gathered by DeepSpeed).

    Returns:
        Keys as in the plain base model; values ``W + transpose(B @ A) * scaling`` for adapted layers.
    """
    layers = lora_layers(peft_model)
    plain: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key[len(_BASE):] if key.startswith(_BASE) else key
        if ".lora_" in key or ".original_module." in key:
            continue
        key = key.replace(".base_layer.", ".").replace(f".modules_to_save.{ADAPTER}.", ".")
        plain[key] = value
    for name, (scaling, fan_in_fan_out) in layers.items():
        a = state_dict[f"{_BASE}{name}.lora_A.{ADAPTER}.weight"]
        b = state_dict[f"{_BASE}{name}.lora_B.{ADAPTER}.weight"]
        delta = b @ a
        delta = (delta.T if fan_in_fan_out else delta) * scaling
        plain[f"{name}.weight"] = plain[f"{name}.weight"] + delta.to(plain[f"{name}.weight"].dtype)
    return plain
