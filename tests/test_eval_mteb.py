"""MTEB adapter: mteb 2's encode protocol (DataLoader batches, prompt types, task instructions) on a fake embedder."""
import types

import numpy as np
import pytest

from bgekit.eval.mteb import MTEBModel


class FakeEmbedder:
    model_name_or_path = "org/fake-model"
    query_instruction_for_retrieval = "Represent this query: "
    query_instruction_format = "{}{}"
    passage_instruction_for_retrieval = None
    passage_instruction_format = "{}{}"
    query_max_length, passage_max_length, dim = 32, 64, 2

    def __init__(self):
        self.calls = []

    def encode(self, texts, batch_size=None, max_length=None, instruction=None, instruction_format=None, show_progress=None):
        self.calls.append({"texts": texts, "instruction": instruction, "max_length": max_length, "batch_size": batch_size})
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_encode_dataloader_batches_with_instructions():
    fake = FakeEmbedder()
    model = MTEBModel(fake, task_instructions={"SciFact": "Given a claim, find evidence: "})
    batches = [{"text": ["a", "bb"]}, {"text": ["ccc"]}]                 # what mteb's DataLoader yields
    task = types.SimpleNamespace(name="SciFact")
    out = model.encode(batches, task_metadata=task, hf_split="test", hf_subset="default", prompt_type="query", batch_size=8)
    assert out.shape == (3, 2) and out.dtype == np.float32
    assert fake.calls[-1] == {"texts": ["a", "bb", "ccc"], "instruction": "Given a claim, find evidence: ", "max_length": 32, "batch_size": 8}
    model.encode(batches, task_metadata=types.SimpleNamespace(name="NFCorpus"), hf_split="test", hf_subset="default",
                 prompt_type=types.SimpleNamespace(value="query"))
    assert fake.calls[-1]["instruction"] == "Represent this query: "    # the model's own, no task entry
    model.encode(["doc"], task_metadata=task, hf_split="test", hf_subset="default", prompt_type="document")
    assert fake.calls[-1]["instruction"] is None and fake.calls[-1]["max_length"] == 64
    model.encode(["s1", "s2"], task_metadata=types.SimpleNamespace(name="STSBenchmark"), hf_split="test", hf_subset="default")
    assert fake.calls[-1]["instruction"] is None


def test_similarity_and_errors():
    model = MTEBModel(FakeEmbedder())
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(model.similarity(a, a), np.eye(2), atol=1e-6)
    np.testing.assert_allclose(model.similarity_pairwise(a, a[::-1]), [0.0, 0.0], atol=1e-6)
    assert model.name == "bgekit/fake-model"
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        model.encode(["x"], task_metadata=None, hf_split="t", hf_subset="d", colour="red")
    with pytest.raises(ValueError, match="unknown prompt_type"):
        model.encode(["x"], prompt_type="passage")
    with pytest.raises(TypeError, match="model_kwargs"):
        MTEBModel(FakeEmbedder(), dtype="bf16")


def test_icl_queries_get_the_few_shot_prompt_with_the_task_instruction():
    """An ICL model's queries go through its few-shot prompt (as encode_queries builds it), with the task's
    instruction in it; equal to a model constructed with that instruction. Documents get no prompt."""
    from bgekit.compat.embedder import FlagICLModel
    from golden import GOLDEN

    decoder = str(GOLDEN / "models" / "decoder-embedder")
    examples = [{"instruct": "Given a claim, find evidence.", "query": "pandas eat bamboo", "response": "Giant pandas feed on bamboo."}]
    task_instruction = "Given a claim, find evidence."
    icl = FlagICLModel(decoder, devices="cpu", query_instruction_for_retrieval="Find the answer.", examples_for_task=examples)
    same = FlagICLModel(decoder, devices="cpu", query_instruction_for_retrieval=task_instruction, examples_for_task=examples)
    model = MTEBModel(icl, task_instructions={"SciFact": task_instruction})
    task = types.SimpleNamespace(name="SciFact")
    queries = ["what do red pandas eat", "how long do tortoises live"]
    got = model.encode(queries, task_metadata=task, hf_split="test", hf_subset="default", prompt_type="query")
    np.testing.assert_allclose(got, same.encode_queries(queries), atol=1e-6)
    assert np.abs(got - icl.encode_queries(queries)).max() > 1e-3     # the instruction did change the prompt
    assert np.abs(got - icl.encode(queries)).max() > 1e-3             # and the prompt is not skipped
    docs = model.encode(queries, task_metadata=task, hf_split="test", hf_subset="default", prompt_type="document")
    np.testing.assert_allclose(docs, icl.encode_corpus(queries), atol=1e-6)


def test_encode_queries_instruction_override_for_icl_and_plain_models():
    from bgekit.compat.embedder import FlagICLModel, FlagModel
    from golden import GOLDEN

    decoder, bert = (str(GOLDEN / "models" / n) for n in ("decoder-embedder", "bert-embedder"))
    icl = FlagICLModel(decoder, devices="cpu", query_instruction_for_retrieval="A.")
    other = FlagICLModel(decoder, devices="cpu", query_instruction_for_retrieval="B.")
    np.testing.assert_allclose(icl.encode_queries(["q"], instruction="B."), other.encode_queries(["q"]), atol=1e-6)
    np.testing.assert_allclose(icl.encode_queries(["q"]), icl.encode_queries(["q"], instruction="A."), atol=0)
    flag = FlagModel(bert, devices="cpu", query_instruction_for_retrieval="A: ")
    np.testing.assert_allclose(flag.encode_queries(["q"], instruction="B: "), flag.encode(["B: q"]), atol=1e-6)
    np.testing.assert_allclose(flag.encode_queries(["q"], instruction=None), flag.encode(["q"]), atol=1e-6)
