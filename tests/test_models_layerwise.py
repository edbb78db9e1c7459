"""The early-exit reranker model code itself: shapes, layer independence, token compression, loading."""
from __future__ import annotations

import json
import math

import pytest
import torch

from bgekit.models import additive_mask, last_token_index, load_pretrained, load_state_dict, model_class, read_config
from bgekit.models.gemma2_lightweight import Compression, LightweightGemma2, compress_tokens
from bgekit.models.minicpm_layerwise import LayerwiseMiniCPM, MiniCPMDecoderLayer
from golden import GOLDEN

LAYERWISE = str(GOLDEN / "models" / "layerwise-reranker")
LIGHTWEIGHT = str(GOLDEN / "models" / "lightweight-reranker")

MINICPM = {"model_type": "minicpm", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 64,
           "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
           "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "scale_emb": 12,
           "dim_model_base": 8, "scale_depth": 1.4, "start_layer": 1, "head_multi": True, "head_type": "simple"}
GEMMA2 = {"model_type": "cost_wise_gemma", "vocab_size": 50, "hidden_size": 32, "intermediate_size": 64,
          "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
          "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
          "rope_theta": 10000.0, "query_pre_attn_scalar": 8, "sliding_window": 4, "final_logit_softcapping": 30.0,
          "attn_logit_softcapping": None, "start_layer": 1, "layer_sep": 1, "layer_wise": True}


def _random(cls, config, seed=0, **options):
    torch.manual_seed(seed)
    model = cls(config, **options).eval()
    with torch.no_grad():
        for p in model.parameters():  # norms too, so a skipped norm would show
            p.add_(torch.randn_like(p) * 0.3)
    return model


def _batch(lengths, total, left=False, seed=1):
    torch.manual_seed(seed)
    ids = torch.randint(3, 50, (len(lengths), total))
    mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, total - n:] = 1
        else:
            mask[i, :n] = 1
    return ids * mask, mask


# ---------------------------------------------------------------- shared helpers

def test_last_token_index_for_left_and_right_padding():
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token_index(right).tolist() == [1, 3]
    assert last_token_index(left).tolist() == [3, 3]


def test_additive_mask_is_causal_padded_and_windowed():
    mask = additive_mask(torch.tensor([[1, 1, 1, 1, 0]]), torch.float32, sliding_window=2)[0, 0]
    allowed = mask == 0
    assert mask.shape == (5, 5)
    assert allowed[3].tolist() == [False, False, True, True, False]  # window of 2, causal
    assert not allowed[2, 3] and allowed[2, 2]
    assert not allowed[1:, 4].any()  # padding key never visible to others
    full = additive_mask(torch.tensor([[0, 0, 1, 1]]), torch.float16)[0, 0]
    assert (full[0] == 0).all()  # a padding query with nothing visible attends anywhere (no NaN)
    assert full[2, 0] == torch.finfo(torch.float16).min


def test_model_class_lists_known_types():
    assert model_class("minicpm") is LayerwiseMiniCPM
    with pytest.raises(ValueError, match="cost_wise_gemma"):
        model_class("llama")


# ---------------------------------------------------------------- MiniCPM layerwise

def test_minicpm_layer_keeps_shape_and_scales_residuals():
    model = _random(LayerwiseMiniCPM, MINICPM)
    layer = model.model.layers[0]
    assert isinstance(layer, MiniCPMDecoderLayer)
    assert layer.residual_scale == pytest.approx(1.4 / math.sqrt(4))
    ids, mask = _batch([5, 3], 6)
    hidden = model.model.embed_tokens(ids)
    rope = model.model.rotary_emb(hidden, torch.arange(6)[None])
    out = layer(hidden, rope, additive_mask(mask, hidden.dtype))
    assert out.shape == hidden.shape == (2, 6, 32)
    layer.residual_scale = 0.0  # with no residual branch the layer is the identity
    assert torch.equal(layer(hidden, rope, additive_mask(mask, hidden.dtype)), hidden)


def test_minicpm_scores_shape_and_heads():
    model = _random(LayerwiseMiniCPM, MINICPM)
    assert model.valid_layers() == [1, 2, 3, 4]
    assert [model.head_index(x) for x in (1, 4)] == [0, 3]
    ids, mask = _batch([6, 4, 2], 8, left=True)
    with torch.no_grad():
        out = model(ids, mask, [1, 3], [0, 2])
        swapped = model(ids, mask, [1, 3], [2, 0])
    assert out.shape == (2, 3) and out.dtype == torch.float32
    assert not torch.allclose(out, swapped)  # heads matter: the unsorted-cutoff quirk is visible


def test_minicpm_exit_score_depends_only_on_layers_up_to_it():
    model = _random(LayerwiseMiniCPM, MINICPM)
    ids, mask = _batch([7, 5], 8, left=True)
    with torch.no_grad():
        before = model(ids, mask, [2, 3], [1, 2])
        model.model.layers[2].mlp.down_proj.weight.mul_(3.0)  # the third layer: used by exit 3, not by exit 2
        after = model(ids, mask, [2, 3], [1, 2])
    assert torch.equal(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_minicpm_padding_does_not_change_scores():
    model = _random(LayerwiseMiniCPM, MINICPM)
    ids, mask = _batch([6, 3], 8, left=True)
    with torch.no_grad():
        batch = model(ids, mask, [4], [3])
        alone = model(ids[1:, 5:], mask[1:, 5:], [4], [3])
    assert torch.allclose(batch[0, 1], alone[0, 0], atol=1e-5)


def test_minicpm_rejects_vocabulary_heads():
    with pytest.raises(ValueError, match="simple"):
        LayerwiseMiniCPM({**MINICPM, "head_type": "raw"})


def test_minicpm_single_shared_head():
    model = _random(LayerwiseMiniCPM, {**MINICPM, "head_multi": False})
    assert model.head_index(3) == 0 and "lm_head.linear_head.weight" in model.state_dict()


# ---------------------------------------------------------------- token compression

def _naive_compress(hidden, n, q, p, r):
    """One row, written plainly: query, means of passage groups, prompt."""
    passage = n - q - p
    parts = [hidden[i] for i in range(q)]
    for start in range(0, passage, r):
        parts.append(hidden[q + start:q + min(start + r, passage)].mean(0))
    parts += [hidden[q + passage + i] for i in range(p)]
    return torch.stack(parts)


@pytest.mark.parametrize("ratio", [1, 2, 3, 4])
def test_compress_tokens_matches_a_plain_per_row_version(ratio):
    torch.manual_seed(0)
    hidden = torch.randn(3, 16, 5)
    lengths, q, p = [16, 11, 6], torch.tensor([3, 2, 4]), torch.tensor([2, 3, 2])  # passages 11, 6 and 0 tokens
    mask = (torch.arange(16)[None] < torch.tensor(lengths)[:, None]).long()
    new, new_mask = compress_tokens(hidden, mask, ratio, q, p)
    expected_lengths = [int(q[i] + math.ceil((lengths[i] - q[i] - p[i]) / ratio) + p[i]) for i in range(3)]
    assert new_mask.sum(1).tolist() == expected_lengths
    assert new.shape == (3, max(expected_lengths), 5)
    for i in range(3):
        n = expected_lengths[i]
        assert torch.allclose(new[i, :n], _naive_compress(hidden[i], lengths[i], int(q[i]), int(p[i]), ratio), atol=1e-6)
        assert (new[i, n:] == 0).all() and (new_mask[i, n:] == 0).all()


def test_compression_happens_only_before_listed_layers_and_shortens_the_sequence():
    model = _random(LightweightGemma2, GEMMA2)
    ids, mask = _batch([16, 12], 16)
    q, p = torch.tensor([3, 3]), torch.tensor([2, 2])
    seen = []
    model.model.layers[2].register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[1]))
    with torch.no_grad():
        plain = model(ids, mask, [1, 4], [0, 3])
        at_two = model(ids, mask, [1, 4], [0, 3], Compression(4, [2], q, p))
        unused = model(ids, mask, [1, 4], [0, 3], Compression(4, [0, 8], q, p))  # layer 0 and 8: never
    assert seen == [16, 3 + 3 + 2, 16]  # ceil(11 / 4) = 3 pooled passage tokens
    assert torch.equal(plain[0], at_two[0])  # exit 1 is collected before compression
    assert not torch.allclose(plain[1], at_two[1])
    assert torch.equal(plain, unused)


# ---------------------------------------------------------------- Gemma2 lightweight

def test_gemma2_scores_are_softcapped_and_shaped():
    model = _random(LightweightGemma2, GEMMA2)
    assert model.valid_layers() == [1, 2, 3, 4] and model.head_index(4) == 3
    with torch.no_grad():
        model.lm_head[3].linear_head.weight.mul_(1e4)
        ids, mask = _batch([8, 5], 8)
        out = model(ids, mask, [2, 4], [1, 3])
    assert out.shape == (2, 2)
    assert out[1].abs().max() <= 30.0 and out[1].abs().max() > 29.0  # tanh(x / 30) * 30 saturates


def test_gemma2_exit_score_depends_only_on_layers_up_to_it():
    model = _random(LightweightGemma2, GEMMA2)
    ids, mask = _batch([8, 6], 8)
    with torch.no_grad():
        before = model(ids, mask, [2, 3], [1, 2])
        model.model.layers[2].mlp.gate_proj.weight.mul_(3.0)  # (o_proj would not do: a norm follows it)
        after = model(ids, mask, [2, 3], [1, 2])
    assert torch.equal(before[0], after[0]) and not torch.allclose(before[1], after[1])


def test_gemma2_attention_softcapping_is_optional():
    config = {**GEMMA2, "attn_logit_softcapping": 0.5}
    off, on = _random(LightweightGemma2, config), _random(LightweightGemma2, config, attn_softcapping=True)
    assert off.cfg.attn_logit_softcapping is None and off.cfg._attn_implementation == "sdpa"
    assert on.cfg._attn_implementation == "eager"
    ids, mask = _batch([8, 6], 8)
    with torch.no_grad():
        assert not torch.allclose(off(ids, mask, [4], [3]), on(ids, mask, [4], [3]))


def test_gemma2_needs_layer_wise_heads():
    with pytest.raises(ValueError, match="layer_wise"):
        LightweightGemma2({**GEMMA2, "layer_wise": False})


# ---------------------------------------------------------------- loading the published weight names

@pytest.mark.parametrize("folder", [LAYERWISE, LIGHTWEIGHT])
def test_fixture_loads_with_every_weight_name_used(folder):
    model = load_pretrained(folder, torch.float32)
    names = set(load_state_dict(folder, torch.float32))
    assert set(model.state_dict()) == names
    assert model.model.rotary_emb.inv_freq.device.type == "cpu"  # rebuilt after the meta-device load


def test_loading_rejects_missing_weights_and_the_wrong_model_type(tmp_path):
    from safetensors.torch import save_file

    state = load_state_dict(LAYERWISE, torch.float32)
    state.pop("model.norm.weight")
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(read_config(LAYERWISE)))
    with pytest.raises(ValueError, match="model.norm.weight"):
        load_pretrained(str(tmp_path), torch.float32)
    with pytest.raises(ValueError, match="cost_wise_gemma"):
        load_pretrained(LAYERWISE, torch.float32, expected_type="cost_wise_gemma")


def test_sharded_checkpoint_loads_like_a_single_file(tmp_path):
    from safetensors.torch import save_file

    state = load_state_dict(LIGHTWEIGHT, torch.float32)
    names = sorted(state)
    shards = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(tmp_path / file))
    index = {"weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(read_config(LIGHTWEIGHT)))
    sharded, single = load_pretrained(str(tmp_path), torch.bfloat16), load_pretrained(LIGHTWEIGHT, torch.bfloat16)
    assert sharded.model.embed_tokens.weight.dtype == torch.bfloat16
    for name, value in single.state_dict().items():
        assert torch.equal(value, sharded.state_dict()[name]), name
