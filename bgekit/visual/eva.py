"""The EVA02 vision tower of Visualized-BGE: patch embedding, 2-D rotary positions, SwiGLU with sub-LayerNorm.

Module and parameter names follow the reference checkpoint (``model_visual.visual.*``), so its state dict
loads as it is. Only the inference path exists here: no patch dropout, drop-path or gradient checkpointing.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bgekit.visual.config import VisionConfig

LN_EPS = 1e-6  # every EVA LayerNorm


def rope_tables(config: VisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, one row per patch (row-major), one column per head channel.

    Each axis gets ``head_width / 2`` channels: frequencies ``1 / 10000^(2k / d)`` (d = head_width / 2),
    each used for an interleaved pair; positions are the grid index, stretched to the pre-training grid when
    ``intp_freq``. A patch's angles are its row's then its column's. Computed in float32 as the reference
    does, so the tables equal the buffers stored in its checkpoints. Returns two (grid*grid, head_width) tensors.
    """
    dim = config.head_width // 2
    grid = config.grid
    if not config.intp_freq and grid != config.pt_hw_seq_len:
        raise ValueError(f"{config.name}: a {grid}x{grid} patch grid needs intp_freq=true "
                         f"(pt_hw_seq_len is {config.pt_hw_seq_len})")
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))  # (dim/2,)
    t = torch.arange(grid) / grid * config.pt_hw_seq_len if config.intp_freq else torch.arange(grid).float()
    angles = torch.einsum("i,f->if", t, freqs).repeat_interleave(2, dim=-1)  # (grid, dim): pairs share an angle
    rows = angles[:, None, :].expand(grid, grid, dim)
    cols = angles[None, :, :].expand(grid, grid, dim)
    table = torch.cat([rows, cols], dim=-1).reshape(grid * grid, 2 * dim)  # (P, head_width)
    return table.cos(), table.sin()


class Rope(nn.Module):
    """Rotate interleaved channel pairs ``(x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)`` per patch."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        cos, sin = rope_tables(config)
        self.register_buffer("freqs_cos", cos, persistent=False)
        self.register_buffer("freqs_sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, heads, P, head_width)
        pairs = x.unflatten(-1, (-1, 2))  # (B, h, P, hw/2, 2)
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return x * self.freqs_cos + rotated * self.freqs_sin


class Attention(nn.Module):
    """Multi-head self-attention with q/v biases (k has none), RoPE on patch tokens, LayerNorm before proj."""

    def __init__(self, config: VisionConfig, rope: Rope):
        super().__init__()
        w = config.width
        self.heads = config.heads
        self.scale = config.head_width ** -0.5
        self.q_proj = nn.Linear(w, w, bias=False)
        self.k_proj = nn.Linear(w, w, bias=False)
        self.v_proj = nn.Linear(w, w, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(w))
        self.v_bias = nn.Parameter(torch.zeros(w))
        self.inner_attn_ln = nn.LayerNorm(w, eps=LN_EPS)
        self.proj = nn.Linear(w, w)
        self._rope = [rope]  # shared by every block; a list keeps it out of this module's state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, W), N = 1 + patches
        b, n, _ = x.shape
        q = F.linear(x, self.q_proj.weight, self.q_bias).view(b, n, self.heads, -1).transpose(1, 2)  # (B, h, N, d)
        k = self.k_proj(x).view(b, n, self.heads, -1).transpose(1, 2)
        v = F.linear(x, self.v_proj.weight, self.v_bias).view(b, n, self.heads, -1).transpose(1, 2)
        rope = self._rope[0]
        q = torch.cat([q[:, :, :1], rope(q[:, :, 1:])], dim=2)  # the CLS token is not rotated
        k = torch.cat([k[:, :, :1], rope(k[:, :, 1:])], dim=2)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
        out = (attn @ v).transpose(1, 2).reshape(b, n, -1)  # (B, N, W)
        return self.proj(self.inner_attn_ln(out))


class SwiGLU(nn.Module):
    """``w3(LayerNorm(silu(w1 x) * w2 x))``."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        w, h = config.width, config.mlp_hidden
        self.w1 = nn.Linear(w, h)
        self.w2 = nn.Linear(w, h)
        self.ffn_ln = nn.LayerNorm(h, eps=LN_EPS)
        self.w3 = nn.Linear(h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class Block(nn.Module):
    """Pre-norm transformer block without layer scale."""

    def __init__(self, config: VisionConfig, rope: Rope):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=LN_EPS)
        self.attn = Attention(config, rope)
        self.norm2 = nn.LayerNorm(config.width, eps=LN_EPS)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.image_size = config.image_size
        self.proj = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) -> (B, P, W)
        if pixels.dim() != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (self.image_size,) * 2:
            raise ValueError(f"pixel batch must be (B, 3, {self.image_size}, {self.image_size}), "
                             f"got {tuple(pixels.shape)}")
        return self.proj(pixels).flatten(2).transpose(1, 2)


class EVAVisionTower(nn.Module):
    """EVA02 ViT returning every token of its last block, before the final norm: (B, 1 + P, W)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.width))
        self.rope = Rope(config)
        self.blocks = nn.ModuleList([Block(config, self.rope) for _ in range(config.layers)])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)  # (B, P, W)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed  # (B, 1+P, W)
        for block in self.blocks:
            x = block(x)
        return x
