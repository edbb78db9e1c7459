"""`bgekit merge` and the merge of rerankers and decoders: merged tensors against the formula computed here from
the checkpoint files, what the saved folders load as, and the errors (before any model loads)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from golden import GOLDEN

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = GOLDEN / "models"
TRIM, FT1, FT2 = (str(MODELS / n) for n in ("bert-embedder-trim", "bert-embedder-ft1", "bert-embedder-ft2"))


def _tensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


def _noisy_copy(src, dst, seed: int):
    """A copy of a model folder with N(0, 0.05) noise on every float tensor (like the golden -ft variants)."""
    import torch
    from safetensors.torch import save_file

    shutil.copytree(src, dst)
    gen = torch.Generator().manual_seed(seed)
    tensors = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in _tensors(src).items()}
    save_file(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return str(dst)


def _main(argv):
    from bgekit.cli import main

    return main(argv)


def test_merge_weights_cli_formula_and_loads_by_any_name(tmp_path, capsys):
    out = tmp_path / "whatever"
    assert _main(["merge", "--models", TRIM, FT1, "--weights", "0.75", "0.25", "--output", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model_type"] == "encoder" and report["weights"] == [0.75, 0.25]
    a, b, merged = _tensors(TRIM), _tensors(FT1), _tensors(out)
    assert set(merged) == set(a)
    for k in a:
        assert (merged[k] == 0.75 * a[k] + 0.25 * b[k]).all(), k
    from bgekit import Embedder

    emb = Embedder(str(out), devices="cpu")
    assert emb.spec.kind == "encoder" and emb.pooling_method == "cls"
    assert emb.encode(["merged models"]).shape == (1, 32)


def test_merge_rerankers_by_layers(tmp_path, capsys):
    """Rerankers merge (the reference's by-layers path crashes on them): the model type comes from the config,
    the classifier head is averaged too, and the folder loads as a cross-encoder."""
    base = str(MODELS / "bert-reranker")
    other = _noisy_copy(base, tmp_path / "rr-ft", seed=3)
    out = tmp_path / "rr-merged"
    assert _main(["merge", "--models", base, other, "--weights", "0.4", "0.6", "--by-layers", "-o", str(out)]) == 0
    assert "reranker" in capsys.readouterr().err
    a, b, merged = _tensors(base), _tensors(other), _tensors(out)
    assert any(k.startswith("classifier.") for k in merged)
    for k in a:
        assert (merged[k] == 0.4 * a[k] + 0.6 * b[k]).all(), k
    assert json.loads((out / "bgekit_spec.json").read_text())["kind"] == "cross-encoder"
    assert not (out / "modules.json").exists()  # no sentence-transformers layout for a reranker
    from bgekit import Reranker

    scores = Reranker(str(out), devices="cpu").score([["a query", "a passage"], ["a query", "other text"]])
    assert len(scores) == 2 and scores[0] != scores[1]


def test_merge_decoder_is_inferred_and_keeps_integer_free_lm_head(tmp_path, capsys):
    lm, ft1 = str(MODELS / "decoder-lm"), str(MODELS / "decoder-ft1")
    out = tmp_path / "dec"
    assert _main(["merge", "--models", lm, ft1, "--weights", "0.5", "0.5", "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_type"] == "decoder"
    merged, a, b = _tensors(out), _tensors(lm), _tensors(ft1)
    assert (merged["lm_head.weight"] == 0.5 * a["lm_head.weight"] + 0.5 * b["lm_head.weight"]).all()
    assert {"generation_config.json", "tokenizer.model"} <= set(os.listdir(out))


def test_merge_with_example_data_file(tmp_path, capsys):
    case = next(c for c in json.loads((GOLDEN / "manifest.json").read_text())["cases"]
                if c["id"] == "cocktail/mix-models-with-data-encoder")
    data = tmp_path / "few.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in case["inputs"]["example_ata"]))
    out = tmp_path / "m"
    assert _main(["merge", "--models", TRIM, FT1, FT2, "--example-data", str(data), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = json.loads((GOLDEN / case["outputs"]["weights"]["file"]).read_text())
    assert report["weights"] == pytest.approx(expected, abs=1e-5)  # every item has exactly 7 negatives: seed-free
    assert len(report["losses"]) == 3


@pytest.mark.parametrize("argv, code, fragment", [
    (["--weights", "0.5", "0.6"], 2, "--weights sum to 1.1; they must sum to 1"),
    (["--weights", "0.25", "0.25"], 2, "--weights sum to 0.5"),
    (["--weights", "1.0"], 2, "1 weights for 2 models"),
    ([], 2, "give either --weights"),
    (["--weights", "0.5", "0.5", "--example-data", "x.jsonl"], 2, "give either --weights"),
    (["--weights", "0.5", "0.5", "--neg-number", "3"], 2, "--neg-number cannot apply with --weights"),
    (["--example-data", "missing.jsonl"], 3, "--example-data 'missing.jsonl' does not exist"),
    (["--example-data", "{bad}"], 3, ":2: field 'neg' must be a list of texts"),
    (["--example-data", "{few}"], 3, ":1: 1 negatives, but neg_number=7"),
    (["--weights", "0.5", "0.5", "--model-type", "reranker"], 4, "has no weights for tensor 'classifier.bias'"),
])
def test_merge_errors(tmp_path, capsys, monkeypatch, argv, code, fragment):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "pos": ["p"], "neg": ["n1", "n2", "n3", "n4", "n5", "n6", "n7"]}\n'
                   '{"query": "q", "pos": ["p"]}\n')
    few = tmp_path / "few.jsonl"
    few.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n')
    argv = [a.replace("{bad}", str(bad)).replace("{few}", str(few)) for a in argv]
    if code != 4:  # nothing may load before these checks
        import bgekit.cocktail.params as params

        monkeypatch.setattr(params, "inspect_model", lambda *a, **k: pytest.fail("a model was read before the check"))
    monkeypatch.chdir(tmp_path)
    assert _main(["merge", "--models", TRIM, FT1, "-o", str(tmp_path / "out"), *argv]) == code
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_merge_refuses_a_folder_with_files_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert _main(["merge", "--models", TRIM, FT1, "--weights", "0.5", "0.5", "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_mismatched_models_name_model_and_tensor(tmp_path):
    from bgekit.cocktail import MergeMismatch, mix_models

    with pytest.raises(MergeMismatch, match=r"tensor 'embeddings.word_embeddings.weight' has shape \[30522, 32\]"):
        mix_models([TRIM, str(MODELS / "bert-embedder")], "encoder", [0.5, 0.5])
    with pytest.raises(MergeMismatch, match=r"model_type 'mistral'.*model_type 'bert'"):
        mix_models([TRIM, str(MODELS / "decoder-embedder")], "encoder", [0.5, 0.5])


def _as_mean_pooling_model(src, dst) -> str:
    """A copy of a tiny BERT named like all-MiniLM-L6-v2, so it resolves to that row (mean pooling, 256 tokens)."""
    shutil.copytree(src, dst)
    return str(dst)


def test_mean_pooling_models_keep_their_pooling_and_loss(tmp_path):
    """A mean-pooling first model: the saved sentence-transformers pooling and bgekit spec say mean (the reference
    always writes CLS), and the example loss scores the mean-pooled embeddings bgekit's Embedder produces."""
    import random

    import torch

    from bgekit import Embedder
    from bgekit.cocktail import compute_weights, mix_models

    base = _as_mean_pooling_model(TRIM, tmp_path / "a" / "all-MiniLM-L6-v2")
    other = _as_mean_pooling_model(FT1, tmp_path / "b" / "all-MiniLM-L6-v2")
    out = tmp_path / "merged"
    mix_models([base, other], "encoder", [0.5, 0.5], output_path=str(out))
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    spec = json.loads((out / "bgekit_spec.json").read_text())
    assert (spec["pooling"], spec["max_length"]) == ("mean", 256)

    case = next(c for c in json.loads((GOLDEN / "manifest.json").read_text())["cases"]
                if c["id"] == "cocktail/mix-models-with-data-encoder")
    examples = case["inputs"]["example_ata"][:2]  # one batch of 2 queries, 16 passages
    random.seed(0)
    weights, losses = compute_weights([base, other], "encoder", examples, neg_number=7)
    for path, loss in zip((base, other), losses):
        emb = Embedder(path, devices="cpu")
        assert emb.pooling_method == "mean"
        q = torch.from_numpy(emb.encode([e["query"] for e in examples]))
        p = torch.from_numpy(emb.encode([t for e in examples for t in e["pos"][:1] + e["neg"]]))
        expected = torch.nn.functional.cross_entropy(q @ p.T / 0.05, torch.tensor([0, 8]))
        assert loss == pytest.approx(float(expected), abs=1e-4)
    assert weights == pytest.approx(torch.softmax(-torch.tensor(losses) / 5.0, -1).tolist(), abs=1e-7)


def test_extra_checkpoint_keys_still_stream(tmp_path):
    """An old checkpoint's persistent position_ids buffer (all-MiniLM-L6-v2 has one) is not a model tensor: the
    file is still streamed tensor by tensor, and the merge is unchanged."""
    import torch
    from safetensors.torch import save_file

    from bgekit.cocktail import mix_models
    from bgekit.cocktail.params import inspect_model

    old = tmp_path / "old"
    shutil.copytree(FT1, old)
    tensors = _tensors(FT1)
    tensors["embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    save_file(tensors, str(old / "model.safetensors"), metadata={"format": "pt"})
    assert inspect_model(str(old), "encoder").files == [str(old / "model.safetensors")]
    merged = mix_models([TRIM, str(old)], "encoder", [0.5, 0.5]).state_dict()
    a, b = _tensors(TRIM), _tensors(FT1)
    assert set(merged) == set(a)
    for k in a:
        assert (merged[k] == 0.5 * a[k] + 0.5 * b[k]).all(), k


def test_m3_heads_merge_with_the_backbone(tmp_path):
    """BGE-M3: the ColBERT and sparse heads are averaged with the same weights (the reference drops them, so its
    folder is no longer an M3 model); the merged folder loads as M3."""
    import torch

    from bgekit.cocktail import mix_models
    from bgekit.loading import load_embedder

    base = str(MODELS / "m3")
    other = _noisy_copy(base, tmp_path / "m3-ft", seed=4)
    gen = torch.Generator().manual_seed(5)
    for name in ("colbert_linear.pt", "sparse_linear.pt"):
        head = torch.load(os.path.join(base, name), weights_only=True)
        torch.save({k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in head.items()}, os.path.join(other, name))
    out = tmp_path / "m3-merged"
    mix_models([base, other], "encoder", [0.7, 0.3], output_path=str(out))
    for name in ("colbert_linear.pt", "sparse_linear.pt"):
        a, b = (torch.load(os.path.join(p, name), weights_only=True) for p in (base, other))
        merged = torch.load(out / name, weights_only=True)
        for k in a:
            assert (merged[k] == 0.7 * a[k] + 0.3 * b[k]).all(), (name, k)
    model = load_embedder(str(out), devices="cpu")
    assert model.spec.kind == "m3" and not (out / "modules.json").exists()
    assert model.encode_multi(["merged"], outputs=("sparse",)).sparse


def test_llm_reranker_merged_as_decoder_stays_a_reranker(tmp_path):
    from bgekit.cocktail import mix_models

    base = tmp_path / "a" / "bge-reranker-v2-gemma"
    base.parent.mkdir()
    shutil.copytree(MODELS / "llm-reranker", base)
    other = _noisy_copy(base, tmp_path / "b", seed=6)
    out = tmp_path / "merged"
    mix_models([str(base), other], "decoder", [0.5, 0.5], output_path=str(out))
    assert json.loads((out / "bgekit_spec.json").read_text())["kind"] == "llm"


def test_integer_buffers_come_from_the_last_model_and_floats_are_fp32():
    """As the reference: integer (and bool) tensors are not averaged, the last model's is kept; half-precision
    tensors are merged in float32."""
    import torch

    from bgekit.cocktail.params import ModelParams, weighted_sum

    tensors = [{"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "ids": torch.tensor([1, 2]), "flag": torch.tensor([True])},
               {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([7, 8]), "flag": torch.tensor([False])}]
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in tensors[0].items()}
    models = [ModelParams(f"m{i}", "", None, shapes, [], "AutoModel", False) for i in range(2)]
    merged = weighted_sum(models, [0.25, 0.75], read=lambda m: iter(tensors[int(m.name[1])].items()))
    assert merged["w"].dtype == torch.float32 and merged["w"].tolist() == [2.5, 4.25]
    assert merged["ids"].tolist() == [7, 8] and merged["flag"].tolist() == [False]
