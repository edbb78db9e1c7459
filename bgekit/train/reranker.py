"""The trainable reranker: batches and loss for cross-encoders, LLM "Yes"-logit and layerwise rerankers.

Training scores exactly what inference scores. The collator builds inputs with the inference builders of
:mod:`bgekit.reranker_inputs` (same instructions, truncation, "\\n" separator, prompt and ``<bos>`` rule), and the
model scores them as :class:`bgekit.reranker.Reranker` / :class:`bgekit.reranker_layerwise.EarlyExitReranker` do:

- cross-encoder: the single classification logit;
- llm: the logit of the token "Yes" (``tokenizer("Yes")[0]``) at each pair's **last real token**, computed from
  the final hidden state and one row of the output embedding (FlagEmbedding trains on the logit at position -1,
  a padding token under right padding, with ``tokenizer("Yes")[-1]``);
- layerwise: the score head of every chosen exit layer (FlagEmbedding trains only the last).

Loss: each query's group (positive first) is a softmax over its passages, cross-entropy towards the positive
(:func:`bgekit.train.losses.group_loss` without in-batch negatives), plus distillation towards the softmax of the
teacher scores when given. Layerwise: the mean of that loss over the chosen layers; without teacher scores the
deepest chosen layer's (detached) distribution also teaches the shallower ones.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from bgekit.reranker_inputs import (PairTemplate, TokenLogitHead, cross_encoder_features, last_positions, llm_features,
                                    pad_features, with_instructions)
from bgekit.train import losses
from bgekit.train.data import TrainGroup

ADAPTER_DIR = "adapter"
LLM_PAD_MULTIPLE = 8  # as bgekit's LLM and layerwise rerankers pad at inference
KINDS = ("cross-encoder", "llm", "layerwise")


@dataclass
class RerankerCollator:
    """TrainGroups -> the keyword arguments of :meth:`RerankerTrainModel.forward`.

    Returns (from ``__call__``): {"pairs": [BatchEncoding, ...] (sub-batches of the B·G pairs, each query's group
    in order, positive first), "teacher_scores": (B, G) float tensor or None, "group_size": G}.
    """

    tokenizer: object
    kind: str
    max_length: int
    query_max_length: int
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    passage_instruction: str | None = None
    passage_instruction_format: str = "{}{}"
    pad_to_multiple_of: int | None = None
    sub_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown reranker kind {self.kind!r}; valid: {', '.join(KINDS)}")
        self._template = PairTemplate.probe(self.tokenizer) if self.kind == "cross-encoder" else None
        if self.pad_to_multiple_of is None and self.kind != "cross-encoder":
            self.pad_to_multiple_of = LLM_PAD_MULTIPLE

    def features(self, pairs: list[tuple[str, str]], prompt: str | None = None) -> list[dict]:
        """Token features of raw (query, passage) pairs, as the inference reranker builds them."""
        pairs = with_instructions(pairs, self.query_instruction, self.query_instruction_format,
                                  self.passage_instruction, self.passage_instruction_format)
        if self.kind == "cross-encoder":
            return cross_encoder_features(self.tokenizer, pairs, self.max_length, self.query_max_length, self._template)
        return llm_features(self.tokenizer, pairs, self.max_length, self.query_max_length, prompt,
                            always_bos=self.kind == "layerwise")

    def pad(self, features: list[dict]) -> list:
        step = self.sub_batch_size or len(features)
        return [pad_features(self.tokenizer, features[i:i + step], self.pad_to_multiple_of)
                for i in range(0, len(features), step)]

    def __call__(self, groups: list[TrainGroup]) -> dict:
        sizes = {len(g.passages) for g in groups}
        if len(sizes) != 1:
            raise ValueError(f"a batch mixes group sizes {sorted(sizes)}")
        features = [f for g in groups for f in self.features([(g.query, p) for p in g.passages], g.prompt)]
        teacher = None
        if any(g.scores is not None for g in groups):
            if any(g.scores is None for g in groups):
                raise ValueError("some examples of a batch have teacher scores and some do not")
            teacher = torch.tensor([g.scores for g in groups], dtype=torch.float32)  # (B, G)
        return {"pairs": self.pad(features), "teacher_scores": teacher, "group_size": sizes.pop()}


class RerankerTrainModel(torch.nn.Module):
    """A reranker in training: ``forward(pairs, teacher_scores, group_size) -> {"loss", "scores"}``.

    Args:
        model: ``*ForSequenceClassification`` (cross-encoder), ``*ForCausalLM`` (llm) or
            :class:`bgekit.models.minicpm_layerwise.LayerwiseMiniCPM` (layerwise), fp32.
        tokenizer: its tokenizer (saved with it).
        spec: the :class:`bgekit.registry.ModelSpec` saved with the model.
        lora: a ``peft.LoraConfig`` to wrap the model with, or None.
        layers: layerwise: the exit layers to train (ascending); None for other kinds.
        self_distill: layerwise without teacher scores: the deepest layer teaches the others.
    """

    def __init__(self, model, tokenizer, spec, lora=None, layers: list[int] | None = None, self_distill: bool = True):
        super().__init__()
        if spec.kind not in KINDS:
            raise ValueError(f"cannot train a {spec.kind!r} reranker; trainable kinds: {', '.join(KINDS)}")
        self.kind, self.spec, self.tokenizer = spec.kind, spec, tokenizer
        self.model = model
        if lora is not None:
            from peft import get_peft_model

            self.model = get_peft_model(model, lora)
        self.layers = sorted(layers) if layers else None
        self.self_distill = self_distill
        if self.kind == "llm":
            self.yes_token_id = tokenizer("Yes", add_special_tokens=False)["input_ids"][0]  # as Reranker._setup_llm
            self.head = TokenLogitHead.for_model(self.base, self.yes_token_id)
        config = getattr(self.base, "config", None)
        if config is not None and getattr(config, "use_cache", None):
            config.use_cache = False

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    @property
    def base(self):
        """The model without the LoRA wrapper (adapters still injected)."""
        return self.model.get_base_model() if self.is_lora else self.model

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, every_n_layers: int = 1,
                                        offload: bool = False) -> None:
        """Called by the Trainer for ``--gradient_checkpointing`` (transformers models only)."""
        if not hasattr(self.base, "activation_checkpointing_enable"):
            raise ValueError(f"--gradient_checkpointing is not supported for {self.kind} rerankers")
        self.base.activation_checkpointing_enable(activation_checkpointing_kwargs, every_n_layers=every_n_layers, offload=offload)
        if self.is_lora:
            self.base.enable_input_require_grads()

    # ------------------------------------------------------------------ scores
    def scores(self, inputs) -> torch.Tensor:
        """Scores of one padded batch of pairs: (N,) fp32, or (L, N) for the layerwise layers."""
        if self.kind == "cross-encoder":
            return self.model(**inputs, return_dict=True).logits[:, 0].float()  # (N,)
        if self.kind == "llm":
            mask = inputs["attention_mask"]
            hidden = self.base.base_model(**inputs, use_cache=False, return_dict=True).last_hidden_state  # (N, T, H)
            rows = torch.arange(mask.shape[0], device=mask.device)
            return self.head(hidden[rows, last_positions(mask)], self.base.get_output_embeddings())  # (N,)
        heads = [self.base.head_index(x) for x in self.layers]
        return self.model(inputs["input_ids"], inputs["attention_mask"], self.layers, heads)  # (L, N)

    def forward(self, pairs: list, teacher_scores: torch.Tensor | None = None, group_size: int = 1) -> dict:
        """The loss of one batch.

        Args:
            pairs: B·G pairs as padded sub-batches (see :class:`RerankerCollator`).
            teacher_scores: (B, G) teacher scores or None.
            group_size: G.

        Returns:
            {"loss": scalar, "scores": (B·G,) scores, or (L, B·G) for layerwise}.
        """
        scores = torch.cat([self.scores(p) for p in pairs], dim=-1)
        layered = scores if scores.dim() == 2 else scores[None]  # (L, B·G)
        grouped = layered.view(layered.shape[0], -1, group_size)  # (L, B, G)
        teacher = None if teacher_scores is None else torch.softmax(teacher_scores.float().to(scores.device), dim=-1)
        loss = sum(losses.group_loss(g, group_size, in_batch=False, teacher_probs=teacher) for g in grouped) / len(grouped)
        if teacher is None and self.self_distill and len(grouped) > 1:
            deepest = torch.softmax(grouped[-1].detach().float(), dim=-1)  # (B, G)
            loss = loss + sum(losses.kl_div_loss(g, deepest) for g in grouped[:-1]) / (len(grouped) - 1)
        return {"loss": loss, "scores": scores}

    # ------------------------------------------------------------------ saving
    def _plain_state(self, state_dict: dict | None) -> dict:
        own = _prefixed(state_dict, "model.") if state_dict is not None else self.model.state_dict()
        if self.is_lora:
            from bgekit.train.lora import merged_state_dict

            return merged_state_dict(self.model, own)
        return own

    def save_to(self, folder: str, state_dict: dict | None = None) -> None:
        """Write a folder FlagAutoReranker and bgekit's rerankers load (weights, tokenizer, ``bgekit_spec.json``)."""
        from bgekit.registry import write_spec_file

        plain = self._plain_state(state_dict)
        if self.kind == "layerwise":
            _save_layerwise(self.base, folder, plain)
        else:
            self.base.save_pretrained(folder, state_dict=plain)
        if self.is_lora:
            own = _prefixed(state_dict, "model.") if state_dict is not None else self.model.state_dict()
            self.model.save_pretrained(os.path.join(folder, ADAPTER_DIR), state_dict=own)
        self.tokenizer.save_pretrained(folder)
        write_spec_file(folder, self.spec)

    def load_from(self, folder: str) -> None:
        """Load trained weights back from a folder written by :meth:`save_to` (to resume)."""
        if self.is_lora:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(self.model, load_file(os.path.join(folder, ADAPTER_DIR, "adapter_model.safetensors")))
            return
        if self.kind == "layerwise":
            from bgekit.models import load_pretrained

            fresh = load_pretrained(folder, next(self.model.parameters()).dtype, "minicpm")
        else:
            fresh = type(self.model).from_pretrained(folder, dtype=next(self.model.parameters()).dtype)
        self.model.load_state_dict(fresh.state_dict())

    def finish(self):
        """After training: the plain model (LoRA merged in, exactly the saved weights), in eval mode."""
        if self.is_lora:
            merged = self._plain_state(None)
            base = self.model.unload()
            base.load_state_dict(merged)
            self.model = base
        self.eval()
        return self.model


def _save_layerwise(model, folder: str, state: dict) -> None:
    """config.json (the checkpoint's, with the head settings) and model.safetensors, as the published model."""
    from safetensors.torch import save_file

    from bgekit.io import atomic_write_text

    config = dict(model.raw_config)
    config.update(architectures=["LayerWiseMiniCPMForCausalLM"], start_layer=model.start_layer,
                  head_multi=model.head_multi, head_type="simple", model_type="minicpm")

    atomic_write_text(os.path.join(folder, "config.json"), json.dumps(config, indent=1) + "\n")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, os.path.join(folder, "model.safetensors"),
              metadata={"format": "pt"})


def _prefixed(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}

