"""A tiny remote-code pseudo-MoE embedding model, written into a folder for tests.

Two model classes share one configuration: ``DomainByForward`` takes ``domain`` as a forward argument;
``DomainBySetter`` has a ``set_domain`` method and a forward without it. Each domain adds its own learned
vector to every token state, so the domain changes the embedding. Every forward records the domain it used
in ``model.seen`` (a plain list, so it survives pickling to a worker process). Random weights, fixed seed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

CONFIG_PY = '''
from transformers import PretrainedConfig


class ToyDomainConfig(PretrainedConfig):
    model_type = "toy_domain"

    def __init__(self, vocab_size=1200, hidden_size=16, domains=("general", "coding", "reasoning"), **kwargs):
        self.vocab_size, self.hidden_size, self.domains = vocab_size, hidden_size, list(domains)
        super().__init__(**kwargs)
'''

MODELING_PY = '''
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_toy import ToyDomainConfig


class _Toy(PreTrainedModel):
    config_class = ToyDomainConfig
    base_model_prefix = "toy"

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.domain_vectors = torch.nn.Embedding(len(config.domains), config.hidden_size)
        self.mix = torch.nn.Linear(config.hidden_size, config.hidden_size)
        self.active = "general"
        self.seen = []
        self.post_init()

    def _init_weights(self, module):
        pass

    def _run(self, input_ids, attention_mask, domain):
        self.seen.append(domain)
        index = torch.tensor(self.config.domains.index(domain), device=input_ids.device)
        hidden = self.embed(input_ids) + self.domain_vectors(index)  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        context = (hidden * mask).cumsum(1) / mask.cumsum(1).clamp(min=1)  # running mean over real tokens
        return BaseModelOutput(last_hidden_state=torch.tanh(self.mix(context)))


class DomainByForward(_Toy):
    def forward(self, input_ids, attention_mask=None, domain=None, return_dict=True):
        return self._run(input_ids, attention_mask, domain or "general")


class DomainBySetter(_Toy):
    def set_domain(self, domain):
        if domain not in self.config.domains:
            raise ValueError(f"unknown domain {domain!r}")
        self.active = domain

    def forward(self, input_ids, attention_mask=None, return_dict=True):
        return self._run(input_ids, attention_mask, self.active)
'''

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


def write_toy(folder: Path, tokenizer_from: Path, model_class: str, seed: int = 0) -> str:
    """Write the toy model (config, code, random weights, tokenizer) to ``folder``; returns its path."""
    import json

    import torch
    from transformers import AutoConfig, AutoModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "configuration_toy.py").write_text(CONFIG_PY)
    (folder / "modeling_toy.py").write_text(MODELING_PY)
    config = {"model_type": "toy_domain", "architectures": [model_class], "vocab_size": 1200, "hidden_size": 16,
              "domains": ["general", "coding", "reasoning"],
              "auto_map": {"AutoConfig": "configuration_toy.ToyDomainConfig", "AutoModel": f"modeling_toy.{model_class}"}}
    (folder / "config.json").write_text(json.dumps(config))
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_from / name, folder / name)
    torch.manual_seed(seed)
    model = AutoModel.from_config(AutoConfig.from_pretrained(folder, trust_remote_code=True), trust_remote_code=True)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    model.save_pretrained(folder)
    return str(folder)
