"""Layerwise / lightweight rerankers: the native API, the reference classes' quirks, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from bgekit.compat.layerwise import LayerWiseFlagLLMReranker, LightWeightFlagLLMReranker
from bgekit.reranker_layerwise import EarlyExitReranker
from golden import GOLDEN

LAYERWISE = str(GOLDEN / "models" / "layerwise-reranker")
LIGHTWEIGHT = str(GOLDEN / "models" / "lightweight-reranker")
PAIRS = [["what is panda?", "hi"],
         ["what is panda?", "The giant panda is a bear species endemic to China. " * 6],
         ["", "an empty query"],
         ["how tall is a giraffe?", "Giraffes are the tallest land animals."]]


@pytest.fixture(scope="module")
def layerwise():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LayerWiseFlagLLMReranker(LAYERWISE, devices="cpu")


@pytest.fixture(scope="module")
def lightweight():
    return LightWeightFlagLLMReranker(LIGHTWEIGHT, devices="cpu")


@pytest.fixture(scope="module")
def native_layerwise():
    return EarlyExitReranker(LAYERWISE, devices="cpu")


@pytest.fixture(scope="module")
def native_lightweight():
    return EarlyExitReranker(LIGHTWEIGHT, devices="cpu")


def _close(a, b):
    return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), atol=1e-5)


# ---------------------------------------------------------------- return shapes

def test_one_pair_gives_a_list_with_one_float(layerwise, lightweight):
    for rr in (layerwise, lightweight):
        out = rr.compute_score(PAIRS[0])
        assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], float)


def test_several_cutoff_layers_give_one_list_per_layer(layerwise):
    out = layerwise.compute_score(PAIRS, cutoff_layers=[1, 3])
    assert len(out) == 2 and all(len(row) == len(PAIRS) for row in out)
    assert _close(out[1], layerwise.compute_score(PAIRS))  # the default is the last layer


def test_normalize_is_the_sigmoid_of_the_logits(lightweight):
    raw = lightweight.compute_score(PAIRS)
    assert _close(lightweight.compute_score(PAIRS, normalize=True), 1 / (1 + np.exp(-np.asarray(raw))))


def test_empty_list_gives_empty_list(layerwise, lightweight, native_layerwise):
    assert layerwise.compute_score([]) == []
    assert layerwise.compute_score([], cutoff_layers=[1, 2]) == []
    assert lightweight.compute_score([], compress_ratio=2, compress_layers=[1]) == []
    assert native_layerwise.score_layers([], layers=[1, 3]) == {1: [], 3: []}


# ---------------------------------------------------------------- reference quirks, and the native API without them

def test_unsorted_cutoff_layers_reproduce_the_reference_head_swap(layerwise, native_layerwise):
    """Reference: states in layer order, heads in the given order. Native: each layer with its own head."""
    quirk = layerwise.compute_score(PAIRS, cutoff_layers=[3, 1])
    one, three = layerwise.compute_score(PAIRS, cutoff_layers=[1]), layerwise.compute_score(PAIRS, cutoff_layers=[3])
    assert not _close(quirk[0], three) and not _close(quirk[1], one)
    native = native_layerwise.score_layers(PAIRS, layers=[3, 1])
    assert list(native) == [3, 1]
    assert _close(native[3], three) and _close(native[1], one)


def test_lightweight_head_is_picked_by_position_in_the_reference_only(lightweight, native_lightweight):
    """Reference: one cutoff layer uses head 0 (trained for start_layer). Native: the layer's own head."""
    every = lightweight.compute_score(PAIRS, cutoff_layers=[2, 3, 4])  # heads 0, 1, 2 = the layers' own
    native = native_lightweight.score_layers(PAIRS, layers=[2, 3, 4])
    assert all(_close(every[i], native[layer]) for i, layer in enumerate([2, 3, 4]))
    assert _close(native_lightweight.score(PAIRS), native[4])  # native default: deepest layer, its head
    assert not _close(lightweight.compute_score(PAIRS), native[4])  # reference default: layer 4, head 0
    assert _close(lightweight.compute_score(PAIRS, cutoff_layers=[2]), native[2])


def test_layers_without_a_head_are_dropped_with_a_warning(layerwise):
    with pytest.warns(UserWarning, match=r"\[0, 7\]"):
        out = layerwise.compute_score(PAIRS, cutoff_layers=[0, 2, 7])
    assert _close(out, layerwise.compute_score(PAIRS, cutoff_layers=[2]))
    with pytest.raises(ValueError, match="cutoff_layers must be in"), pytest.warns(UserWarning):
        layerwise.compute_score(PAIRS, cutoff_layers=[0, 9])


def test_native_api_rejects_layers_without_a_head(native_layerwise):
    with pytest.raises(ValueError, match=r"valid exit layers: \[1, 2, 3\]"):
        native_layerwise.score(PAIRS, layer=0)
    with pytest.raises(ValueError, match="layer must be an int"):
        native_layerwise.score(PAIRS, layer=[1, 2])
    with pytest.raises(ValueError, match="no trained head"):
        EarlyExitReranker(LAYERWISE, devices="cpu", layers=[5])


def test_native_default_layers_come_from_the_constructor(native_layerwise):
    two = EarlyExitReranker(LAYERWISE, devices="cpu", layers=[2])
    assert _close(two.score(PAIRS), native_layerwise.score(PAIRS, layer=2))
    assert list(two.score_layers(PAIRS)) == [2]


def test_compression_is_off_unless_a_layer_is_reached(lightweight):
    plain = lightweight.compute_score(PAIRS)
    assert _close(lightweight.compute_score(PAIRS, compress_ratio=2), plain)  # default layers [8]: never reached
    assert not _close(lightweight.compute_score(PAIRS, compress_ratio=2, compress_layers=[1]), plain)
    with pytest.warns(DeprecationWarning):
        old = lightweight.compute_score(PAIRS, compress_ratio=2, compress_layer=[1])
    assert _close(old, lightweight.compute_score(PAIRS, compress_ratio=2, compress_layers=[1]))


def test_results_do_not_depend_on_the_batch(lightweight, layerwise):
    for rr, kwargs in ((lightweight, {"compress_ratio": 2, "compress_layers": [1]}), (layerwise, {})):
        assert _close(rr.compute_score(PAIRS, batch_size=1, **kwargs), rr.compute_score(PAIRS, **kwargs))


def test_instructions_and_prompt_change_the_input(lightweight):
    plain = lightweight.compute_score(PAIRS)
    assert not _close(lightweight.compute_score(PAIRS, prompt="Is B relevant to A?"), plain)


def test_rank_sorts_passages_by_native_score(native_layerwise):
    passages = [p for _, p in PAIRS]
    hits = native_layerwise.rank("what is panda?", passages, layer=2)
    scores = native_layerwise.score([["what is panda?", p] for p in passages], layer=2)
    assert [h.score for h in hits] == sorted(scores, reverse=True)
    assert [h.rank for h in hits] == [1, 2, 3, 4] and hits[0].text == passages[int(np.argmax(scores))]


# ---------------------------------------------------------------- precision

def test_layerwise_fp16_warning_like_the_reference():
    with pytest.warns(UserWarning, match="use_fp16 is set to True"):
        rr = LayerWiseFlagLLMReranker(LAYERWISE, devices="cpu")
    assert rr.use_fp16 and str(rr.dtype) == "torch.float32"  # fp16 on CPU runs fp32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LayerWiseFlagLLMReranker(LAYERWISE, devices="cpu", use_fp16=True)


def test_lightweight_has_no_untrue_fp16_warning():
    """The reference warns that fp16 is switched on but runs fp32 (a local variable is set); we just run fp32."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rr = LightWeightFlagLLMReranker(LIGHTWEIGHT, devices="cpu")
    assert not rr.use_fp16 and str(rr.dtype) == "torch.float32"


def test_dataloader_options_are_accepted_and_change_nothing(layerwise):
    assert _close(layerwise.compute_score(PAIRS, use_dataloader=True, num_workers=2), layerwise.compute_score(PAIRS))


def test_bf16_on_cpu_is_close_to_fp32(native_lightweight):
    bf16 = EarlyExitReranker(LIGHTWEIGHT, devices="cpu", use_bf16=True)
    assert str(bf16.model.model.embed_tokens.weight.dtype) == "torch.bfloat16"
    a, b = np.asarray(bf16.score(PAIRS)), np.asarray(native_lightweight.score(PAIRS))
    # measured: max |bf16 - fp32| = 0.0242 on these pairs (scores up to 0.98 in magnitude); 3x margin
    assert np.all(np.isfinite(a)) and np.abs(a - b).max() < 0.075


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("pairs, index", [([["q", "p"], ["q", 3]], 1), ([["q", "p", "x"]], 0), ([("q",)], 0)])
def test_a_pair_that_is_not_two_strings_names_its_index(layerwise, pairs, index):
    with pytest.raises(TypeError, match=rf"\[{index}\]"):
        layerwise.compute_score(pairs)


@pytest.mark.parametrize("cutoff", [[], "2", [1.5], [True], [None]])
def test_cutoff_layers_that_make_no_sense(layerwise, cutoff):
    with pytest.raises(ValueError, match="cutoff_layers"):
        layerwise.compute_score(PAIRS, cutoff_layers=cutoff)


@pytest.mark.parametrize("kwargs, match", [({"compress_ratio": 0}, "compress_ratio"), ({"compress_ratio": -2}, "compress_ratio"),
                                           ({"compress_ratio": 1.5}, "compress_ratio"), ({"compress_layers": [-1]}, "compress_layers"),
                                           ({"compress_layers": "8"}, "compress_layers"), ({"normalize": "yes"}, "normalize"),
                                           ({"max_length": 0}, "max_length"), ({"batch_size": 0}, "batch_size")])
def test_settings_that_make_no_sense(lightweight, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lightweight.compute_score(PAIRS, **kwargs)


def test_unknown_keyword_arguments_raise(lightweight):
    with pytest.raises(TypeError, match="cutoff_layer"):
        lightweight.compute_score(PAIRS, cutoff_layer=[2])
    with pytest.raises(TypeError, match="compress_ratios"):
        LightWeightFlagLLMReranker(LIGHTWEIGHT, devices="cpu", compress_ratios=2)
    with pytest.raises(ValueError, match="cutoff_layers"):
        LightWeightFlagLLMReranker(LIGHTWEIGHT, devices="cpu", cutoff_layers=[])


def test_wrong_checkpoint_and_peft_are_clear_errors():
    with pytest.raises(ValueError, match="minicpm"):
        LightWeightFlagLLMReranker(LAYERWISE, devices="cpu")
    with pytest.raises(NotImplementedError, match="peft_path"):
        LightWeightFlagLLMReranker(LIGHTWEIGHT, peft_path="adapter", devices="cpu")
    with pytest.raises(ValueError, match="not an early-exit reranker"):
        EarlyExitReranker(str(GOLDEN / "models" / "llm-reranker"))


def test_two_devices_give_the_same_scores(native_layerwise):
    two = EarlyExitReranker(LAYERWISE, devices=["cpu", "cpu"])
    assert _close(two.score_layers(PAIRS, layers=[1, 3])[3], native_layerwise.score(PAIRS, layer=3))
