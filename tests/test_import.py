import subprocess
import sys


def test_import_bgekit_is_light():
    code = ("import sys, bgekit; heavy = [m for m in ('torch', 'transformers', 'numpy', 'faiss', 'tokenizers') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_public_names_resolve_lazily():
    import bgekit

    assert bgekit.FlagAutoModel.__name__ == "FlagAutoModel"
    assert set(bgekit.__all__) >= {"FlagAutoModel", "FlagModel", "BGEM3FlagModel", "FlagLLMModel", "FlagICLModel"}
    try:
        bgekit.NoSuchThing
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("unknown attribute did not raise")
