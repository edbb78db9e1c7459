"""FlagEmbedding's inference surface under bgekit: module paths, base classes, pool and single-device methods,
model mapping, and the keyword arguments its docs pass. Values are checked against the golden reference cases."""
from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from golden import GOLDEN, assert_close, build, case_by_id, load_output, resolve_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

# Public names of FlagEmbedding 1.4.2's inference modules (read from its source: __all__ and model_mapping).
REFERENCE_PUBLIC = {
    "FlagEmbedding": ["AbsEmbedder", "AbsReranker", "FlagAutoModel", "FlagAutoReranker", "EmbedderModelClass",
                      "RerankerModelClass", "FlagModel", "BGEM3FlagModel", "FlagICLModel", "FlagLLMModel",
                      "FlagPseudoMoEModel", "FlagReranker", "FlagLLMReranker", "LayerWiseFlagLLMReranker",
                      "LightWeightFlagLLMReranker"],
    "FlagEmbedding.abc.inference": ["AbsEmbedder", "AbsReranker"],
    "FlagEmbedding.abc.inference.AbsEmbedder": ["AbsEmbedder"],
    "FlagEmbedding.abc.inference.AbsReranker": ["AbsReranker"],
    "FlagEmbedding.inference": ["FlagAutoModel", "FlagAutoReranker", "EmbedderModelClass", "RerankerModelClass",
                                "FlagModel", "BGEM3FlagModel", "FlagICLModel", "FlagLLMModel", "FlagPseudoMoEModel",
                                "FlagReranker", "FlagLLMReranker", "LayerWiseFlagLLMReranker",
                                "LightWeightFlagLLMReranker"],
    "FlagEmbedding.inference.auto_embedder": ["FlagAutoModel"],
    "FlagEmbedding.inference.auto_reranker": ["FlagAutoReranker"],
    "FlagEmbedding.inference.embedder": ["FlagModel", "BGEM3FlagModel", "FlagICLModel", "FlagLLMModel",
                                         "FlagPseudoMoEModel", "EmbedderModelClass"],
    "FlagEmbedding.inference.embedder.encoder_only": ["FlagModel", "BGEM3FlagModel"],
    "FlagEmbedding.inference.embedder.encoder_only.base": ["BaseEmbedder"],
    "FlagEmbedding.inference.embedder.encoder_only.m3": ["M3Embedder"],
    "FlagEmbedding.inference.embedder.decoder_only": ["FlagLLMModel", "FlagICLModel", "FlagPseudoMoEModel"],
    "FlagEmbedding.inference.embedder.decoder_only.base": ["BaseLLMEmbedder"],
    "FlagEmbedding.inference.embedder.decoder_only.icl": ["ICLLLMEmbedder"],
    "FlagEmbedding.inference.embedder.decoder_only.pseudo_moe": ["PseudoMoELLMEmbedder"],
    "FlagEmbedding.inference.embedder.model_mapping": [
        "EmbedderModelClass", "EMBEDDER_CLASS_MAPPING", "PoolingMethod", "EmbedderConfig", "BGE_MAPPING",
        "QWEN3_EMBEDDING_MAPPING", "E5_MAPPING", "GTE_MAPPING", "SFR_MAPPING", "LINQ_MAPPING", "BCE_MAPPING",
        "AUTO_EMBEDDER_MAPPING", "support_native_bge_model_list", "support_model_list", "AbsEmbedder", "FlagModel",
        "BGEM3FlagModel", "FlagLLMModel", "FlagICLModel", "FlagPseudoMoEModel"],
    "FlagEmbedding.inference.reranker": ["FlagReranker", "FlagLLMReranker", "LayerWiseFlagLLMReranker",
                                         "LightWeightFlagLLMReranker", "RerankerModelClass"],
    "FlagEmbedding.inference.reranker.encoder_only": ["FlagReranker"],
    "FlagEmbedding.inference.reranker.encoder_only.base": ["BaseReranker"],
    "FlagEmbedding.inference.reranker.decoder_only": ["FlagLLMReranker", "LayerWiseFlagLLMReranker",
                                                      "LightWeightFlagLLMReranker"],
    "FlagEmbedding.inference.reranker.decoder_only.base": ["BaseLLMReranker"],
    "FlagEmbedding.inference.reranker.decoder_only.layerwise": ["LayerWiseLLMReranker"],
    "FlagEmbedding.inference.reranker.decoder_only.lightweight": ["LightweightLLMReranker"],
    "FlagEmbedding.inference.reranker.model_mapping": [
        "RerankerModelClass", "RERANKER_CLASS_MAPPING", "RerankerConfig", "AUTO_RERANKER_MAPPING", "AbsReranker",
        "FlagReranker", "FlagLLMReranker", "LayerWiseFlagLLMReranker", "LightWeightFlagLLMReranker"],
}


@pytest.mark.parametrize("module", sorted(REFERENCE_PUBLIC))
def test_every_reference_name_imports_from_the_same_path(module):
    ours = importlib.import_module(module.replace("FlagEmbedding", "bgekit"))
    missing = [n for n in REFERENCE_PUBLIC[module] if not hasattr(ours, n)]
    assert not missing, f"{module}: {missing}"


def test_same_classes_under_every_path():
    import bgekit
    from bgekit.inference.embedder.decoder_only.icl import ICLLLMEmbedder
    from bgekit.inference.embedder.encoder_only.m3 import M3Embedder
    from bgekit.inference.reranker.decoder_only.lightweight import LightweightLLMReranker

    assert ICLLLMEmbedder is bgekit.FlagICLModel and M3Embedder is bgekit.BGEM3FlagModel
    assert LightweightLLMReranker is bgekit.LightWeightFlagLLMReranker
    importlib.import_module("bgekit.abc.inference.AbsEmbedder")  # the same-named submodule does not shadow the class
    from bgekit.abc.inference import AbsEmbedder

    assert AbsEmbedder is bgekit.AbsEmbedder


def test_flag_classes_derive_from_the_base_classes():
    import bgekit

    for name in ("FlagModel", "FlagLLMModel", "FlagICLModel", "FlagPseudoMoEModel", "BGEM3FlagModel"):
        assert issubclass(getattr(bgekit, name), bgekit.AbsEmbedder), name
    for name in ("FlagReranker", "FlagLLMReranker", "LayerWiseFlagLLMReranker", "LightWeightFlagLLMReranker"):
        assert issubclass(getattr(bgekit, name), bgekit.AbsReranker), name


def test_model_mapping_is_a_view_of_the_registry():
    from test_registry import REFERENCE_NAMES

    from bgekit import registry
    from bgekit.inference.embedder.model_mapping import (AUTO_EMBEDDER_MAPPING, BGE_MAPPING, EmbedderModelClass,
                                                         PoolingMethod, support_model_list,
                                                         support_native_bge_model_list)
    from bgekit.inference.reranker.model_mapping import AUTO_RERANKER_MAPPING, RerankerModelClass

    assert support_model_list()[:len(REFERENCE_NAMES)] == REFERENCE_NAMES
    assert list(AUTO_EMBEDDER_MAPPING) == list(registry.EMBEDDERS)
    assert support_native_bge_model_list() == [n for n in REFERENCE_NAMES if n.startswith("bge-")] == list(BGE_MAPPING)
    code = AUTO_EMBEDDER_MAPPING["bge-code-v1"]
    assert (code.model_class.__name__, code.pooling_method, code.trust_remote_code, code.query_instruction_format) == (
        "FlagLLMModel", PoolingMethod.LAST_TOKEN, True, "<instruct>{}\n<query>{}")
    e5 = AUTO_EMBEDDER_MAPPING["multilingual-e5-large-instruct"]
    assert (e5.model_class.__name__, e5.pooling_method, e5.query_instruction_format) == (
        "FlagModel", PoolingMethod.MEAN, "Instruct: {}\nQuery: {}")
    assert AUTO_EMBEDDER_MAPPING["bge-en-icl"].model_class.__name__ == "FlagICLModel"
    assert AUTO_EMBEDDER_MAPPING["bge-m3"].model_class.__name__ == "BGEM3FlagModel"
    assert [m.value for m in EmbedderModelClass] == ["encoder-only-base", "encoder-only-m3", "decoder-only-base",
                                                   "decoder-only-icl", "decoder-only-pseudo_moe"]
    assert list(AUTO_RERANKER_MAPPING) == list(registry.RERANKERS)
    assert AUTO_RERANKER_MAPPING["bge-reranker-v2-minicpm-layerwise"].model_class.__name__ == "LayerWiseFlagLLMReranker"
    assert AUTO_RERANKER_MAPPING["jina-reranker-v2-base-multilingual"].trust_remote_code is True
    assert RerankerModelClass("decoder-only-lightweight").name == "DECODER_ONLY_LIGHTWEIGHT"


def test_auto_classes_take_the_enum():
    from bgekit import EmbedderModelClass, FlagAutoModel, FlagAutoReranker, RerankerModelClass

    model = FlagAutoModel.from_finetuned(str(GOLDEN / "models" / "bert-embedder"),
                                         model_class=EmbedderModelClass.ENCODER_ONLY_BASE, use_fp16=False, devices="cpu")
    assert type(model).__name__ == "FlagModel"
    reranker = FlagAutoReranker.from_finetuned(str(GOLDEN / "models" / "bert-reranker"),
                                               model_class=RerankerModelClass.ENCODER_ONLY_BASE, devices="cpu")
    assert type(reranker).__name__ == "FlagReranker"


# ---------------------------------------------------------------- single-device methods, against golden cases

def _golden(case_id):
    case = case_by_id(case_id)
    return case, build(case), resolve_inputs(case)


@pytest.mark.parametrize("case_id", ["bert-embedder/encode-cls-norm", "bert-embedder/encode-single-string",
                                     "decoder-embedder/encode-norm"])
def test_encode_single_device_matches_the_reference(case_id):
    case, model, (texts,) = _golden(case_id)
    out = model.encode_single_device(texts, batch_size=256, max_length=512, device="cpu")
    assert_close(out, load_output(case, next(iter(case["outputs"]))), case["tolerance"], case_id)


def test_icl_single_device_queries_and_set_examples_match_the_reference():
    from bgekit import FlagICLModel

    case = case_by_id("icl/encode-queries-examples")
    kwargs = dict(case["constructor_kwargs"])
    examples = kwargs.pop("examples_for_task")
    model = FlagICLModel(str(GOLDEN / case["model"]), **kwargs)  # no examples yet
    (queries,) = resolve_inputs(case)
    model.set_examples(examples_for_task=examples)
    out = model.encode_queries_single_device(queries, device="cpu")
    assert_close(out, load_output(case, "embeddings"), case["tolerance"], case["id"])
    model.stop_self_query_pool()
    assert model.query_pool is None


def test_m3_single_device_methods_match_the_reference():
    case, model, (pairs,) = _golden("m3/compute-score")
    scores = model.compute_score_single_device(pairs, device="cpu")
    assert_close(scores, load_output(case, "scores"), case["tolerance"], case["id"])
    case, model, (texts,) = _golden("m3/encode-all")
    out = model.encode_single_device(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True, device="cpu")
    for key in case["outputs"]:
        assert_close(out[key], load_output(case, key), case["tolerance"], f"{case['id']}:{key}")


@pytest.mark.parametrize("case_id,kwargs", [
    ("bert-reranker/compute-score", {}),
    ("xlmr-reranker/compute-score-instructions", {}),
    ("llm-reranker/compute-score", {}),
    ("layerwise-reranker/compute-score-cutoff-1-2-3", {"cutoff_layers": [1, 2, 3]}),
    ("lightweight-reranker/compute-score", {}),
])
def test_compute_score_single_gpu_matches_the_reference(case_id, kwargs):
    """compute_score = get_detailed_inputs (instructions) + compute_score_single_gpu, as in FlagEmbedding."""
    case, model, (pairs,) = _golden(case_id)
    out = model.compute_score_single_gpu(model.get_detailed_inputs(pairs), device="cpu", **kwargs)
    assert_close(out, load_output(case, next(iter(case["outputs"]))), case["tolerance"], case_id)


def test_small_helpers_behave_as_the_reference():
    import torch

    _, model, _ = _golden("bert-embedder/encode-cls-norm")
    assert model.get_detailed_instruct("Instruct: {}\\nQuery: {}", "find", "cats") == "Instruct: find\nQuery: cats"
    assert model.get_detailed_instruct(instruction_format="{}: {}", instruction="q", sentence="s") == "q: s"
    from bgekit import FlagICLModel

    assert FlagICLModel.get_detailed_example("<i>{}\\n<q>{}\\n<r>{}", "I", "Q", "R") == "<i>I\n<q>Q\n<r>R"
    assert model.get_target_devices("cpu") == ["cpu"] and model.get_target_devices(["cpu", "cpu"]) == ["cpu", "cpu"]
    assert model.get_model_torch_dtype() == torch.float32  # use_fp16=False in the case
    from bgekit import FlagLLMReranker

    assert FlagLLMReranker.get_model_torch_dtype.__qualname__.endswith("get_model_torch_dtype")
    model.stop_self_pool()  # nothing to stop; the model goes to the CPU and stays usable
    assert model.pool is None and model.encode_single_device("x").shape == (32,)


def test_get_target_devices_refuses_a_device_this_machine_lacks():
    import torch

    from bgekit import FlagModel

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(Exception, match="not available on this machine") as err:
        FlagModel.get_target_devices(["cuda:0"])
    assert type(err.value).__name__ == "DeviceError"


# ---------------------------------------------------------------- pools

def test_pool_handle_runs_chunks_and_refuses_use_after_stop():
    from bgekit import AbsEmbedder, BGEM3FlagModel

    case = case_by_id("m3/compute-score")
    model = BGEM3FlagModel(str(GOLDEN / case["model"]), devices=["cpu", "cpu"], use_fp16=False)
    (pairs,) = resolve_inputs(case)
    pool = model.start_multi_process_pool(BGEM3FlagModel._compute_score_multi_process_worker)
    scores = model.compute_score_multi_process(pairs, pool)
    assert_close(scores, load_output(case, "scores"), case["tolerance"], case["id"])
    model.stop_multi_process_pool(pool)
    with pytest.raises(ValueError, match="stopped"):
        model.compute_score_multi_process(pairs, pool)
    with pytest.raises(TypeError, match="worker functions"):
        model.start_multi_process_pool(print)
    assert model.start_multi_process_pool(AbsEmbedder._encode_multi_process_worker)["method"] == "encode_single_device"


def test_worker_functions_follow_the_queue_protocol():
    """The *_multi_process_worker functions work with FlagEmbedding's own queue protocol, in this process."""
    import queue

    from bgekit import FlagReranker

    case, model, (pairs,) = _golden("bert-reranker/compute-score")
    inbox, outbox = queue.Queue(), queue.Queue()
    inbox.put([0, pairs[:3], {}])
    inbox.put([1, pairs[3:], {"normalize": False}])
    inbox.put(None)
    FlagReranker._encode_multi_process_worker("cpu", model, inbox, outbox)
    got = [outbox.get_nowait() for _ in range(2)]
    assert [g[0] for g in got] == [0, 1]
    assert_close(got[0][1] + got[1][1], load_output(case, "scores"), case["tolerance"], case["id"])


def test_m3_pool_results_concatenate_like_one_call():
    """M3 chunks (run here through the queue worker) concatenate into the reference's encode dict."""
    import queue

    from bgekit import BGEM3FlagModel

    case, model, (texts,) = _golden("m3/encode-all")
    inbox, outbox = queue.Queue(), queue.Queue()
    kwargs = dict(case["method_kwargs"], batch_size=4, max_length=512)
    for i, chunk in enumerate((texts[:5], texts[5:])):
        inbox.put([i, chunk, kwargs])
    inbox.put(None)
    BGEM3FlagModel._encode_multi_process_worker("cpu", model, inbox, outbox)
    merged = model._concatenate_results_from_multi_process([outbox.get_nowait()[1] for _ in range(2)])
    for key in case["outputs"]:
        assert_close(merged[key], load_output(case, key), case["tolerance"], f"{case['id']}:{key}")


# ---------------------------------------------------------------- keyword arguments the docs pass

@pytest.mark.parametrize("cls,folder", [("FlagReranker", "bert-reranker"), ("FlagLLMReranker", "llm-reranker"),
                                        ("LayerWiseFlagLLMReranker", "layerwise-reranker"),
                                        ("LightWeightFlagLLMReranker", "lightweight-reranker")])
def test_passage_max_length_is_accepted_with_a_warning_and_changes_nothing(cls, folder, monkeypatch):
    import bgekit
    from bgekit.compat import abstract

    monkeypatch.setattr(abstract, "_ONCE", set())
    klass = getattr(bgekit, cls)
    path = str(GOLDEN / "models" / folder)
    pairs = [["what is panda?", "hi"], ["what is panda?", "The giant panda is a bear species endemic to China."]]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with_arg = klass(path, query_max_length=256, passage_max_length=512, use_fp16=True, devices="cpu")
        klass(path, passage_max_length=64, devices="cpu")
    notes = [w for w in seen if "passage_max_length has no effect" in str(w.message)]
    assert len(notes) == 1  # once per process
    without = klass(path, query_max_length=256, use_fp16=True, devices="cpu")
    np.testing.assert_allclose(with_arg.compute_score(pairs), without.compute_score(pairs), atol=1e-6)
    with pytest.raises(TypeError, match="passage_max_len"):
        klass(path, passage_max_len=512, devices="cpu")  # an argument nothing documents still raises


def test_auto_reranker_passes_passage_max_length_through():
    from bgekit import FlagAutoReranker

    reranker = FlagAutoReranker.from_finetuned(str(GOLDEN / "models" / "bert-reranker"), model_class="encoder-only-base",
                                               query_max_length=256, passage_max_length=512, use_fp16=True,
                                               devices=["cpu"])
    assert len(reranker.compute_score(["query", "passage"])) == 1
