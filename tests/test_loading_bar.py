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
