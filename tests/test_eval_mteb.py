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
