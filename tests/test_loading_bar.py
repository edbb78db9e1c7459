"""transformers' "Loading weights" bar is hidden for small local models and the user's setting is left as found."""
import pytest

from bgekit import backends



@pytest.fixture
def bert_folder():
    from golden import GOLDEN

    path = GOLDEN / "models" / "bert-embedder"
    if not path.is_dir():
        pytest.skip(f"golden models not present at {GOLDEN}")
    return str(path)


@pytest.mark.parametrize("enabled", [True, False])
def test_small_model_loads_without_bar_and_setting_restored(bert_folder, capfd, enabled):
    from transformers.utils import logging as hf_logging

    (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
    try:
        backends.load_model(bert_folder, dtype=None)
        assert "Loading weights" not in capfd.readouterr().err
        assert hf_logging.is_progress_bar_enabled() is enabled
    finally:
        hf_logging.enable_progress_bar()


def test_large_model_keeps_the_bar(bert_folder, capfd, monkeypatch):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    monkeypatch.setattr(backends, "QUIET_LOAD_BYTES", 1)  # every folder counts as large
    backends.load_model(bert_folder, dtype=None)
    assert "Loading weights" in capfd.readouterr().err


def test_merging_small_models_shows_no_loading_or_writing_bars(bert_folder, capfd, tmp_path, monkeypatch):
    """`bgekit merge` of two small models: no "Loading weights" bar per model, no "Writing model shards" bar;
    the same merge of models that count as large keeps both (so the check can fail)."""
    from transformers.utils import logging as hf_logging

    from golden import GOLDEN
    from bgekit.cocktail import mix_models

    hf_logging.enable_progress_bar()
    first, other = str(GOLDEN / "models" / "bert-embedder-ft1"), str(GOLDEN / "models" / "bert-embedder-ft2")
    mix_models([first, other], "encoder", [0.5, 0.5], output_path=str(tmp_path / "small"))
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err
    assert hf_logging.is_progress_bar_enabled()
    monkeypatch.setattr(backends, "QUIET_LOAD_BYTES", 1)
    mix_models([first, other], "encoder", [0.5, 0.5], output_path=str(tmp_path / "large"))
    err = capfd.readouterr().err
    assert "Loading weights" in err and "Writing model shards" in err
