"""Pooling of token states into one vector per text: a table of functions keyed by name."""
from __future__ import annotations

from typing import Callable

import torch


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """First token. hidden (B, T, H), mask (B, T) -> (B, H)."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens. hidden (B, T, H), mask (B, T) -> (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(dim=1) / mask.sum(dim=1, keepdim=True).to(hidden.dtype)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State of each row's last real token, for left or right padding. (B, T, H) -> (B, H).

    Like the reference, a batch counts as left-padded only when every row's last position is real.
    """
    if bool((mask[:, -1] == 1).all()):
        return hidden[:, -1]
    last = mask.sum(dim=1) - 1  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLING: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cls": cls_pool,
    "mean": mean_pool,
    "last_token": last_token_pool,
}


def get_pooling(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pooling function called ``name``; ValueError listing the valid names otherwise."""
    try:
        return POOLING[name]
    except KeyError:
        raise ValueError(f"unknown pooling method {name!r}; valid: {', '.join(POOLING)}") from None
