"""Dense embedders: encode / encode_queries / encode_corpus for encoder-only, decoder-only and ICL models.

The kinds differ only in data (pooling, instruction templates, an ICL few-shot prefix), so one class
serves them all. BGE-M3 adds heads on top (see :mod:`bgekit.m3`).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bgekit import backends
from bgekit.batching import check_batch_size, check_texts, map_devices, run_sorted
from bgekit.errors import positive_int, ModelMismatch
from bgekit.pooling import get_pooling
from bgekit.prompts import apply_instruction, icl_prefix
from bgekit.registry import DEFAULT_MODEL, ModelSpec, resolve, with_task

logger = logging.getLogger(__name__)

_FROM_SPEC = object()  # sentinel: "use what the model table says"


class Embedder:
    """Encode texts into dense vectors.

    Args:
        model_name_or_path: a local folder, a hub name, or "all-MiniLM-L6-v2" (the embedded default).
        spec: how to run the model; resolved from the folder or name when None.
        task: for models with per-task instructions (BAAI/llm-embedder: qa, convsearch, chat, lrlm, icl, tool),
            the task whose query and passage instructions encode_queries / encode_corpus apply.
        pooling: "cls", "mean" or "last_token"; defaults to the spec's.
        normalize: L2-normalise the output vectors.
        query_instruction: instruction for encode_queries; defaults to the one the model was trained with.
        query_instruction_format: template with two ``{}``: instruction, query.
        passage_instruction / passage_instruction_format: the same for encode_corpus.
        devices: "cpu", "cuda:0", a list of devices (one worker process each), or None for all GPUs / CPU.
        dtype: "fp32", "fp16" or "bf16"; or use use_fp16 / use_bf16 (fp16 on CPU runs fp32, bf16 is real bf16).
        batch_size, query_max_length, passage_max_length: defaults for the encode calls; the lengths default
            to the model's trained length (sentence-transformers' max_seq_length) or 512.
        truncate_dim: keep the first N dimensions (Matryoshka), before normalisation.
        convert_to_numpy: return numpy arrays (else torch tensors).
        examples: ICL few-shot examples, dicts with "instruct", "query", "response" (ICL models).
        examples_instruction_format / icl_suffix: ICL prompt pieces.
        trust_remote_code, cache_dir: passed to transformers / the hub download.

    Attributes:
        forward_kwargs: extra keyword arguments for the model's forward pass (a remote-code model's own options,
            such as a pseudo-MoE model's ``domain``); empty by default.

    Example:
        >>> emb = Embedder("all-MiniLM-L6-v2")
        >>> emb.encode(["I love NLP", "I love machine learning"]).shape
        (2, 384)
    """

    forward_kwargs: dict[str, Any] = {}  # read-only default; an instance sets its own dict

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_MODEL,
        *,
        spec: ModelSpec | None = None,
        task: str | None = None,
        pooling: str | None = None,
        normalize: bool = True,
        query_instruction: Any = _FROM_SPEC,
        query_instruction_format: str | None = None,
        passage_instruction: Any = _FROM_SPEC,
        passage_instruction_format: str | None = None,
        devices: Any = None,
        dtype: str | None = None,
        use_fp16: bool = False,
        use_bf16: bool = False,
        batch_size: int = 256,
        query_max_length: int | None = None,
        passage_max_length: int | None = None,
        truncate_dim: int | None = None,
        convert_to_numpy: bool = True,
        examples: list[dict] | None = None,
        examples_instruction_format: str = "<instruct>{}\n<query>{}\n<response>{}",
        icl_suffix: str = "\n<response>",
        trust_remote_code: bool | None = None,
        cache_dir: str | None = None,
    ):
        self.model_name_or_path = model_name_or_path
        self.target_devices = backends.resolve_devices(devices)  # before any download: a missing device fails fast
        self.path = backends.locate(model_name_or_path, cache_dir)
        self.spec = spec if spec is not None else resolve(model_name_or_path, folder=self.path)
        if not self.spec.is_embedder:
            raise ValueError(f"{model_name_or_path!r} is a {self.spec.kind} reranker, not an embedder; use bgekit.Reranker")
        self.spec = with_task(self.spec, task, model_name_or_path)  # a task's instruction pair (BAAI/llm-embedder)
        self.max_positions = backends.position_limit(backends.read_config(self.path))
        self.pooling_method = pooling or self.spec.pooling or "cls"
        self._pool = get_pooling(self.pooling_method)
        self.normalize_embeddings = bool(normalize)
        self.query_instruction_for_retrieval = self.spec.query_instruction if query_instruction is _FROM_SPEC else query_instruction
        self.query_instruction_format = query_instruction_format or self.spec.query_instruction_format
        self.passage_instruction_for_retrieval = self.spec.passage_instruction if passage_instruction is _FROM_SPEC else passage_instruction
        self.passage_instruction_format = passage_instruction_format or self.spec.passage_instruction_format
        self.batch_size = check_batch_size(batch_size)
        default_length = min(self.spec.max_length or 512, self.max_positions or 512)
        self.query_max_length = _check_length(_given(query_max_length, default_length), "query_max_length",
                                              self.max_positions)
        self.passage_max_length = _check_length(_given(passage_max_length, default_length), "passage_max_length",
                                                self.max_positions)
        positive_int(truncate_dim, "truncate_dim", allow_none=True)
        self.truncate_dim = truncate_dim
        self.convert_to_numpy = convert_to_numpy
        self.examples_for_task = examples
        self.examples_instruction_format = examples_instruction_format.replace("\\n", "\n")
        self.suffix = icl_suffix
        self.dtype = backends.resolve_dtype(self.target_devices[0], use_fp16, use_bf16, dtype)
        remote = self.spec.trust_remote_code if trust_remote_code is None else trust_remote_code
        self.tokenizer = backends.load_tokenizer(self.path, trust_remote_code=remote)
        self.model = backends.load_model(self.path, self.dtype, trust_remote_code=remote)
        hidden = self.model.config.get_text_config().hidden_size
        if truncate_dim is not None and truncate_dim > hidden:
            raise ModelMismatch(f"truncate_dim={truncate_dim} is larger than the model's dimension {hidden}")
        self._device = "cpu"
        self.set_examples(examples)

    # ------------------------------------------------------------------ public API
    @property
    def dim(self) -> int:
        """Output dimension (after truncate_dim)."""
        hidden = self.model.config.get_text_config().hidden_size
        return min(hidden, self.truncate_dim) if self.truncate_dim else hidden

    def save_pretrained(self, folder: str) -> str:
        """Save weights, tokenizer and this embedder's ModelSpec, so the folder loads as the same kind
        whatever it is later named. Returns the folder."""
        import dataclasses

        from bgekit.registry import write_spec_file

        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        spec = dataclasses.replace(self.spec, pooling=self.pooling_method,
                                   query_instruction=self.query_instruction_for_retrieval,
                                   query_instruction_format=self.query_instruction_format,
                                   passage_instruction=self.passage_instruction_for_retrieval,
                                   passage_instruction_format=self.passage_instruction_format,
                                   max_length=self.passage_max_length)
        write_spec_file(folder, spec)
        return folder

    def set_examples(self, examples: list[dict] | None = None) -> None:
        """Set ICL few-shot examples (None keeps the current ones); builds the query prefix."""
        if examples is not None:
            self.examples_for_task = examples
        self.prefix = icl_prefix(self.examples_for_task, self.examples_instruction_format, self.query_instruction_for_retrieval)

    def encode_queries(self, queries, batch_size: int | None = None, max_length: int | None = None,
                       convert_to_numpy: bool | None = None, pad_to_multiple_of: int | None = None,
                       show_progress: bool | None = None, *, instruction: Any = _FROM_SPEC):
        """Encode queries: the query instruction is applied (and, for ICL models, the few-shot prefix).

        ``instruction`` replaces the query instruction for this call (None: no instruction); for ICL models it
        is the instruction of the few-shot prompt (examples without their own "instruct" use it too).
        """
        if instruction is _FROM_SPEC:
            instruction = self.query_instruction_for_retrieval
        if self.spec.kind == "icl":
            return self._encode(queries, batch_size, _given(max_length, self.query_max_length), convert_to_numpy,
                                pad_to_multiple_of, show_progress, icl=True, instruction=instruction)
        return self.encode(queries, batch_size, _given(max_length, self.query_max_length), convert_to_numpy,
                           instruction, self.query_instruction_format, pad_to_multiple_of, show_progress)

    def encode_corpus(self, corpus, batch_size: int | None = None, max_length: int | None = None,
                      convert_to_numpy: bool | None = None, pad_to_multiple_of: int | None = None,
                      show_progress: bool | None = None):
        """Encode passages: the passage instruction is applied, never the query one."""
        return self.encode(corpus, batch_size, _given(max_length, self.passage_max_length), convert_to_numpy,
                           self.passage_instruction_for_retrieval, self.passage_instruction_format, pad_to_multiple_of,
                           show_progress)

    def encode(self, sentences, batch_size: int | None = None, max_length: int | None = None,
               convert_to_numpy: bool | None = None, instruction: str | None = None,
               instruction_format: str | None = None, pad_to_multiple_of: int | None = None,
               show_progress: bool | None = None):
        """Encode texts. A single string gives a 1-D vector; a list gives a (N, dim) array.

        Args:
            sentences: a string or a list of strings.
            batch_size: defaults to the constructor's.
            max_length: tokens per text (longer texts are truncated); defaults to passage_max_length.
            convert_to_numpy: numpy array (True) or torch tensor.
            instruction / instruction_format: prepended to every text before tokenizing.
            pad_to_multiple_of: pad batches to a multiple of this many tokens.
            show_progress: progress bar; None shows one for 256 texts or more.
        """
        texts, single = check_texts(sentences)
        if instruction is not None:
            texts = [apply_instruction(instruction_format or "{}{}", instruction, t) for t in texts]
        return self._encode(texts if not single else texts[0], batch_size, _given(max_length, self.passage_max_length),
                            convert_to_numpy, pad_to_multiple_of, show_progress)

    # ------------------------------------------------------------------ internals
    def _encode(self, sentences, batch_size, max_length, convert_to_numpy, pad_to_multiple_of, show_progress=None,
                icl: bool = False, instruction: str | None = None):
        """``instruction``: the ICL prompt's instruction (ICL queries only; encode_queries passes it)."""
        texts, single = check_texts(sentences, "queries" if icl else "sentences")
        batch_size = check_batch_size(_given(batch_size, self.batch_size))
        max_length = _check_length(max_length, "max_length", getattr(self, "max_positions", None))
        to_numpy = self.convert_to_numpy if convert_to_numpy is None else convert_to_numpy
        args = (batch_size, max_length, pad_to_multiple_of, icl, show_progress, instruction)
        if len(self.target_devices) > 1 and len(texts) > 1:
            n = len(self.target_devices)
            chunks = [(texts[i::n],) + args for i in range(n)]
            parts = map_devices(self._encode_on_device, chunks, self.target_devices)
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for i, part in enumerate(parts):
                out[i::n] = part
        else:
            out = self._encode_on_device(self.target_devices[0], texts, *args)
        if not to_numpy:
            import torch

            out = torch.from_numpy(out)
        return out[0] if single else out

    def _encode_on_device(self, device: str, texts: list[str], batch_size: int, max_length: int,
                          pad_to_multiple_of: int | None, icl: bool, show_progress: bool | None = None,
                          instruction: str | None = None) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        features = self._tokenize_icl(texts, max_length, instruction) if icl else self._tokenize(texts, max_length)
        self._to(device)

        @torch.inference_mode()
        def forward(batch):
            inputs = self._pad(batch, pad_to_multiple_of).to(device)
            hidden = self.model(**inputs, **self.forward_kwargs, return_dict=True).last_hidden_state  # (B, T, H)
            return self._finish(self._pool(hidden, inputs["attention_mask"]))  # (B, D)

        rows = run_sorted(features, [len(f["input_ids"]) for f in features], forward, batch_size, device,
                          desc="Encoding", show_progress=show_progress)
        return torch.stack(rows).cpu().numpy()

    def _finish(self, pooled):
        """Truncate (Matryoshka) then normalise, in fp32. (B, H) -> (B, D)."""
        import torch

        pooled = pooled.float()
        if self.truncate_dim:
            pooled = pooled[:, : self.truncate_dim]
        if self.normalize_embeddings:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled

    def _to(self, device: str) -> None:
        if device != self._device:
            self.model.to(device)
            self._device = device

    def _tokenize(self, texts: list[str], max_length: int, **kwargs) -> list[dict]:
        enc = self.tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
        return _rows(enc, len(texts))

    def _pad(self, batch: list[dict], pad_to_multiple_of: int | None = None):
        cols = {k: [f[k] for f in batch] for k in batch[0]}
        return self.tokenizer.pad(cols, padding=True, return_tensors="pt", pad_to_multiple_of=pad_to_multiple_of)

    def _tokenize_icl(self, queries: list[str], max_length: int, instruction: str | None) -> list[dict]:
        """ICL queries: instruction applied, truncated, wrapped in prefix + query + suffix (reference layout)."""
        tok = self.tokenizer
        prefix = icl_prefix(self.examples_for_task, self.examples_instruction_format, instruction)
        if instruction is not None:
            queries = [apply_instruction(self.query_instruction_format, instruction, q) for q in queries]
        n_prefix = len(tok(prefix, add_special_tokens=False)["input_ids"])
        n_suffix = len(tok(self.suffix, add_special_tokens=False)["input_ids"])
        n_bos = len(tok("<s>", add_special_tokens=False)["input_ids"])
        n_tail = len(tok(f"{self.suffix}</s>", add_special_tokens=False)["input_ids"])
        budget = max_length - n_bos - n_tail
        if budget < 1:
            raise ValueError(f"max_length={max_length} leaves no room for the query after the ICL suffix")
        ids = tok(queries, truncation=True, max_length=budget, add_special_tokens=False)["input_ids"]
        wrapped = [prefix + t + self.suffix for t in tok.batch_decode(ids)]
        total = (n_prefix + n_suffix + max_length + 8) // 8 * 8 + 8
        return self._tokenize(wrapped, total)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model_name_or_path!r}, kind={self.spec.kind!r}, "
                f"pooling={self.pooling_method!r}, dtype={str(self.dtype).replace('torch.', '')})")


def _rows(enc, n: int) -> list[dict]:
    """BatchEncoding of lists -> one dict per text."""
    keys = list(enc.keys())
    return [{k: enc[k][i] for k in keys} for i in range(n)]


def _given(value: Any, default: Any) -> Any:
    """``default`` only when ``value`` is None: 0 and negative values are errors, never "the default"."""
    return default if value is None else value


def _check_length(value: Any, name: str, limit: int | None = None) -> int:
    return backends.check_length(value, name, limit)
