"""BAAI/llm-embedder: the per-task instruction pairs, ``Embedder(..., task=)``, the CLI's ``--task`` (encode and
evaluation), and the reference README's usage, on a tiny BERT checkpoint in a folder named ``llm-embedder``.

The reference's own definition of the outputs (its README's "Using transformers" block: the task's instruction
prepended, CLS of the last hidden state, L2 normalisation) is computed here with plain transformers."""
from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from golden import GOLDEN

pytestmark = pytest.mark.usefixtures("one_thread")

REF_README = Path(__file__).resolve().parents[2] / "ref" / "research" / "llm_embedder" / "README.md"
QUERIES, KEYS = ["test query 1", "test query 2"], ["test key 1", "test key 2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A copy of the golden BERT embedder named like the hub model."""
    target = tmp_path_factory.mktemp("hub") / "BAAI" / "llm-embedder"
    shutil.copytree(GOLDEN / "models" / "bert-embedder", target)
    return str(target)


def _transformers_block(folder: str, instruction: dict) -> tuple[np.ndarray, np.ndarray]:
    """The reference README's plain-transformers computation (CLS pooling, L2 normalisation)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    for texts in ([instruction["query"] + q for q in QUERIES], [instruction["key"] + k for k in KEYS]):
        with torch.no_grad():
            hidden = model(**tokenizer(texts, padding=True, return_tensors="pt")).last_hidden_state
        out.append(torch.nn.functional.normalize(hidden[:, 0], p=2, dim=1).numpy())
    return out[0], out[1]


def test_instructions_are_the_reference_readmes():
    """The table's six instruction pairs are the INSTRUCTIONS dict of the reference README (read from its text)."""
    from bgekit.registry import LLM_EMBEDDER_TASKS

    if not REF_README.is_file():
        pytest.skip(f"reference checkout absent: {REF_README}")
    block = re.search(r"INSTRUCTIONS = (\{.*?\n\})", REF_README.read_text(encoding="utf-8"), re.S).group(1)
    assert LLM_EMBEDDER_TASKS == ast.literal_eval(block)
    assert set(LLM_EMBEDDER_TASKS) == {"qa", "convsearch", "chat", "lrlm", "icl", "tool"}


@pytest.mark.parametrize("task", ["qa", "tool"])
def test_task_instructions_match_the_reference_definition(folder, task):
    from bgekit import Embedder
    from bgekit.registry import LLM_EMBEDDER_TASKS

    emb = Embedder(folder, task=task, devices="cpu")
    assert (emb.spec.kind, emb.pooling_method, emb.normalize_embeddings) == ("encoder", "cls", True)
    q_ref, k_ref = _transformers_block(folder, LLM_EMBEDDER_TASKS[task])
    np.testing.assert_allclose(emb.encode_queries(QUERIES), q_ref, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(emb.encode_corpus(KEYS), k_ref, atol=1e-5, rtol=1e-4)


def test_every_task_selects_its_pair_and_bad_tasks_are_named(folder):
    from bgekit import Embedder
    from bgekit.errors import UsageError
    from bgekit.registry import EMBEDDERS, LLM_EMBEDDER_TASKS, resolve, with_task

    spec = resolve(folder)
    assert spec.extra["tasks"] == LLM_EMBEDDER_TASKS
    for task, pair in LLM_EMBEDDER_TASKS.items():
        chosen = with_task(spec, task, folder)
        assert (chosen.query_instruction, chosen.passage_instruction) == (pair["query"], pair["key"])
    default = Embedder(folder, devices="cpu")  # no task: the qa pair (docs/compat.md)
    assert default.query_instruction_for_retrieval == LLM_EMBEDDER_TASKS["qa"]["query"]
    assert default.passage_instruction_for_retrieval == LLM_EMBEDDER_TASKS["qa"]["key"]
    with pytest.raises(UsageError, match="unknown task 'retrieval'.*valid tasks: qa, convsearch, chat, lrlm, icl, tool"):
        Embedder(folder, task="retrieval", devices="cpu")
    with pytest.raises(UsageError, match="has no per-task instructions"):
        with_task(EMBEDDERS["bge-base-en-v1.5"], "qa", "bge-base-en-v1.5")


def test_reference_readme_flagmodel_usage(folder):
    """The README's FlagEmbedding block as written (import changed; cuda:0 -> cpu), for the qa task."""
    from bgekit import Embedder, FlagModel
    from bgekit.registry import LLM_EMBEDDER_TASKS as INSTRUCTIONS

    task = "qa"
    model = FlagModel(folder,
                      use_fp16=False,
                      query_instruction_for_retrieval=INSTRUCTIONS[task]['query'],
                      passage_instruction_for_retrieval=INSTRUCTIONS[task]['key'],
                      devices=['cpu'])
    query_embeddings = model.encode_queries(QUERIES)
    key_embeddings = model.encode_corpus(KEYS)
    similarity = query_embeddings @ key_embeddings.T
    q_ref, k_ref = _transformers_block(folder, INSTRUCTIONS[task])
    np.testing.assert_allclose(similarity, q_ref @ k_ref.T, atol=1e-5)
    native = Embedder(folder, task=task, devices="cpu")
    np.testing.assert_allclose(similarity, native.encode_queries(QUERIES) @ native.encode_corpus(KEYS).T, atol=1e-6)


def _main(argv):
    from bgekit.cli import main

    return main(argv)


def test_cli_encode_task(folder, tmp_path, capsys):
    from bgekit import Embedder

    texts = tmp_path / "q.txt"
    texts.write_text("\n".join(QUERIES) + "\n")
    out = tmp_path / "q.npy"
    assert _main(["encode", str(texts), "-o", str(out), "--model", folder, "--kind", "query", "--task", "chat"]) == 0
    expected = Embedder(folder, task="chat", devices="cpu").encode_queries(QUERIES)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    assert _main(["encode", str(texts), "-o", str(out), "--model", folder, "--task", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_cli_eval_task(folder, tmp_path, capsys):
    """`bgekit eval beir --task tool` evaluates with the tool task's instructions (recorded in the report)."""
    from bgekit.registry import LLM_EMBEDDER_TASKS

    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    docs = {"d1": "Paris is the capital of France.", "d2": "Spiders have eight legs.", "d3": "Water boils at 100 C."}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in docs.items()))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "capital of France"}) + "\n"
                                        + json.dumps({"_id": "q2", "text": "how many legs"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    out = tmp_path / "r.json"
    assert _main(["eval", "beir", "--dataset-dir", str(data), "--model", folder, "--task", "tool", "--output", str(out),
                  "--no-progress", "--k-values", "1,3", "--search-top-k", "3"]) == 0
    model = json.loads(out.read_text())["model"]
    assert model["query_instruction"] == LLM_EMBEDDER_TASKS["tool"]["query"]
    assert model["passage_instruction"] == LLM_EMBEDDER_TASKS["tool"]["key"]
    assert _main(["eval", "beir", "--dataset-dir", str(data), "--retrieval", "bm25", "--task", "qa"]) == 2
    assert "--task" in capsys.readouterr().err
