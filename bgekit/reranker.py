"""Rerankers: score (query, passage) pairs and rank passages for a query.

One class serves both kinds that transformers can run as they are: cross-encoders
(``*ForSequenceClassification``, the score is the single logit) and decoder-only LLM rerankers
(``*ForCausalLM``, the score is the logit of the token "Yes" after the reference prompt). The layerwise
and lightweight LLM rerankers live in :mod:`bgekit.reranker_layerwise` and reuse the input builders
re-exported here from :mod:`bgekit.reranker_inputs`.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from bgekit.errors import positive_int
from bgekit import backends
from bgekit.batching import check_batch_size, check_texts, map_devices, run_sorted
from bgekit.registry import ModelSpec, resolve_reranker
from bgekit.reranker_inputs import (  # noqa: F401  (re-exported for the layerwise / lightweight rerankers)
    DEFAULT_LLM_PROMPT, PAIR_SEP, PairTemplate, check_length, check_normalize, check_pairs,
    cross_encoder_features, fit_pair, last_positions, llm_features, pad_features, sigmoid, TokenLogitHead,
    with_instructions,
)
from bgekit.types import Hit

logger = logging.getLogger(__name__)

AUTO_CLASSES = {"cross-encoder": "AutoModelForSequenceClassification", "llm": "AutoModelForCausalLM"}
LLM_PAD_MULTIPLE = 8  # the reference pads LLM batches to a multiple of 8 tokens
_FROM_SPEC = object()  # sentinel: "use what the model table says"


class Reranker:
    """Score (query, passage) pairs with a cross-encoder or an LLM "Yes"-logit reranker.

    Args:
        model_name_or_path: a local folder or a hub name such as "BAAI/bge-reranker-v2-m3".
        spec: how to run the model; resolved from the folder or the name when None (kind "cross-encoder" or "llm").
        query_instruction / query_instruction_format: prefix for queries (LLM rerankers: "A: ").
        passage_instruction / passage_instruction_format: prefix for passages (LLM rerankers: "B: ").
        prompt: LLM rerankers: the question after the pair; None uses the reference prompt.
        devices: "cpu", "cuda:0", a list (one worker process each), or None for all GPUs / CPU.
        dtype: "fp32", "fp16" or "bf16"; or use_fp16 / use_bf16 (fp16 on CPU runs fp32, bf16 is real bf16).
        batch_size, max_length, query_max_length: defaults for scoring; max_length defaults to the spec's (a
            trained folder's pair length) or 512, query_max_length to the spec's ``extra["query_max_length"]``
            (saved by ``bgekit train reranker``) or max_length * 3 // 4.
        normalize: apply a sigmoid to the scores.
        peft_path: LLM rerankers: a PEFT adapter merged into the weights (needs ``peft``).
        trust_remote_code, cache_dir: passed to transformers / the hub download.

    Example:
        >>> rr = Reranker("BAAI/bge-reranker-v2-m3")                                  # doctest: +SKIP
        >>> [h.id for h in rr.rank("what is a panda?", ["hi", "The giant panda is a bear."])]  # doctest: +SKIP
        ['1', '0']
    """

    def __init__(
        self,
        model_name_or_path: str,
        *,
        spec: ModelSpec | None = None,
        query_instruction: Any = _FROM_SPEC,
        query_instruction_format: str | None = None,
        passage_instruction: Any = _FROM_SPEC,
        passage_instruction_format: str | None = None,
        prompt: str | None = None,
        devices: Any = None,
        dtype: str | None = None,
        use_fp16: bool = False,
        use_bf16: bool = False,
        batch_size: int = 128,
        max_length: int | None = None,
        query_max_length: int | None = None,
        normalize: bool = False,
        peft_path: str | None = None,
        trust_remote_code: bool | None = None,
        cache_dir: str | None = None,
    ):
        self.model_name_or_path = model_name_or_path
        self.target_devices = backends.resolve_devices(devices)  # before any download: a missing device fails fast
        self.path = backends.locate(model_name_or_path, cache_dir)
        self.spec = spec if spec is not None else resolve_reranker(model_name_or_path, folder=self.path)
        self.max_positions = backends.position_limit(backends.read_config(self.path))
        if self.spec.kind not in AUTO_CLASSES:
            raise ValueError(f"{model_name_or_path!r} is a {self.spec.kind} reranker; load it with FlagAutoReranker or "
                             f"bgekit.reranker_layerwise (Reranker runs kinds: {', '.join(AUTO_CLASSES)})")
        self.kind = self.spec.kind
        self.query_instruction = self.spec.query_instruction if query_instruction is _FROM_SPEC else query_instruction
        self.query_instruction_format = query_instruction_format or self.spec.query_instruction_format
        self.passage_instruction = self.spec.passage_instruction if passage_instruction is _FROM_SPEC else passage_instruction
        self.passage_instruction_format = passage_instruction_format or self.spec.passage_instruction_format
        if prompt is not None and self.kind != "llm":
            raise ValueError("prompt applies to LLM rerankers only")
        self.prompt = prompt
        self.batch_size = check_batch_size(batch_size)
        default_length = min(self.spec.max_length or 512, self.max_positions or 512)
        self.max_length = backends.check_length(default_length if max_length is None else max_length, "max_length",
                                                self.max_positions)
        query_max_length = query_max_length if query_max_length is not None else self.spec.extra.get("query_max_length")
        self.query_max_length = None if query_max_length is None else check_length(query_max_length, "query_max_length")
        self.normalize = check_normalize(normalize)
        self.dtype = backends.resolve_dtype(self.target_devices[0], use_fp16, use_bf16, dtype)
        remote = self.spec.trust_remote_code if trust_remote_code is None else trust_remote_code
        self.tokenizer = backends.load_tokenizer(self.path, trust_remote_code=remote)
        self.model = backends.load_model(self.path, self.dtype, trust_remote_code=remote, auto_class=AUTO_CLASSES[self.kind])
        if peft_path:
            self.model = _merge_peft(self.model, peft_path)
        self._device = "cpu"
        {"cross-encoder": self._setup_cross_encoder, "llm": self._setup_llm}[self.kind]()

    # ------------------------------------------------------------------ public API
    def score(self, sentence_pairs, *, batch_size: int | None = None, max_length: int | None = None,
              query_max_length: int | None = None, normalize: bool | None = None, prompt: str | None = None,
              show_progress: bool | None = None) -> list[float]:
        """Scores of ``[query, passage]`` pairs, in input order (one pair gives a list with one float).

        Args:
            sentence_pairs: one ``[query, passage]`` or a list of them.
            batch_size, max_length, query_max_length, normalize: override the constructor's values.
            prompt: LLM rerankers: override the prompt.
            show_progress: progress bar; None shows one for 256 pairs or more.

        Returns:
            A list of floats: raw logits, or sigmoids of them (computed in float64) with normalize.
        """
        pairs = check_pairs(sentence_pairs)
        normalize = self.normalize if normalize is None else check_normalize(normalize)
        if prompt is not None and self.kind != "llm":
            raise ValueError("prompt applies to LLM rerankers only")
        batch_size = check_batch_size(self.batch_size if batch_size is None else batch_size)
        max_length = backends.check_length(self.max_length if max_length is None else max_length, "max_length",
                                           getattr(self, "max_positions", None))
        if query_max_length is None:
            query_max_length = self.query_max_length or max(1, max_length * 3 // 4)
        query_max_length = check_length(query_max_length, "query_max_length")
        if not pairs:
            return []
        pairs = with_instructions(pairs, self.query_instruction, self.query_instruction_format,
                                  self.passage_instruction, self.passage_instruction_format)
        args = (batch_size, max_length, query_max_length, self.prompt if prompt is None else prompt, show_progress)
        if len(self.target_devices) > 1 and len(pairs) > 1:
            n = len(self.target_devices)
            parts = map_devices(self._score_on_device, [(pairs[i::n],) + args for i in range(n)], self.target_devices)
            scores = np.empty(len(pairs), dtype=np.float32)
            for i, part in enumerate(parts):
                scores[i::n] = part
        else:
            scores = self._score_on_device(self.target_devices[0], pairs, *args)
        return sigmoid(scores) if normalize else scores.tolist()

    def rank(self, query: str, passages: Sequence[str], top_k: int | None = None, *, ids: Sequence[str] | None = None,
             batch_size: int | None = None, normalize: bool | None = None, show_progress: bool | None = None) -> list[Hit]:
        """Score every passage against ``query`` and return them best first.

        Args:
            query: the query text.
            passages: the candidate texts.
            top_k: keep this many (None keeps all).
            ids: an id per passage for the hits (default: the passage's index as a string).
            batch_size, normalize, show_progress: as in :meth:`score`.

        Returns:
            :class:`bgekit.types.Hit` list sorted by descending score (ties keep input order), ranks from 1.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a string, got {type(query).__name__}")
        texts, single = check_texts(passages, "passages")
        if single:
            raise TypeError("passages must be a list of strings, got a single string")
        if top_k is not None:
            check_length(top_k, "top_k")
        scores = self.score([(query, p) for p in texts], batch_size=batch_size, normalize=normalize,
                            show_progress=show_progress) if texts else []
        return rank_scores(scores, texts, ids, top_k)

    # ------------------------------------------------------------------ internals
    def _setup_cross_encoder(self) -> None:
        labels = self.model.config.num_labels
        if labels != 1:
            raise ValueError(f"{self.model_name_or_path!r} has {labels} output labels; a cross-encoder reranker has 1")
        self._template = PairTemplate.probe(self.tokenizer)

    def _setup_llm(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is None:
            tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
        self.yes_token_id = tok("Yes", add_special_tokens=False)["input_ids"][0]
        self._head = TokenLogitHead.for_model(self.model, self.yes_token_id)
        self._full_logits = False
        self._head_checked = False

    def _check_head(self, device: str = "cpu") -> None:
        """Compare the one-row logit with the model's own full logits once, on a short probe input.

        A model whose forward changes logits in a way LOGIT_TRANSFORMS does not know would score wrongly;
        it falls back (with a warning) to the model's full logits at the last position.
        """
        import torch

        feats = llm_features(self.tokenizer, [("What is a panda?", "The giant panda is a bear.")], 64, 48, self.prompt)
        inputs = pad_features(self.tokenizer, feats).to(device)
        self._head_checked = True
        with torch.inference_mode():
            ours = self._llm_scores(inputs)
            full = self.model(**inputs, use_cache=False, return_dict=True).logits[:, -1, self.yes_token_id].float()
        tol = 1e-3 if self.dtype == torch.float32 else 5e-2
        if not torch.allclose(ours, full, atol=tol, rtol=tol):
            logger.warning("%s: the one-token 'Yes' logit (%.4g) differs from the model's own logit (%.4g); "
                           "using full logits", self.model_name_or_path, float(ours[0]), float(full[0]))
            self._full_logits = True

    def _llm_scores(self, inputs):
        """The "Yes" logit at each row's last real token. -> (B,) fp32."""
        import torch

        mask = inputs["attention_mask"]
        last = last_positions(mask)  # (B,)
        rows = torch.arange(mask.shape[0], device=mask.device)
        if self._full_logits:
            logits = self.model(**inputs, use_cache=False, return_dict=True).logits  # (B, T, V)
            return logits[rows, last, self.yes_token_id].float()
        hidden = self.model.base_model(**inputs, use_cache=False, return_dict=True).last_hidden_state  # (B, T, H)
        return self._head(hidden[rows, last], self.model.get_output_embeddings())  # (B,)

    def _cross_scores(self, inputs):
        return self.model(**inputs, return_dict=True).logits[:, 0].float()  # (B,)

    def _score_on_device(self, device: str, pairs: list[tuple[str, str]], batch_size: int, max_length: int,
                         query_max_length: int, prompt: str | None, show_progress: bool | None = None) -> np.ndarray:
        import torch

        if self.kind == "llm":
            features = llm_features(self.tokenizer, pairs, max_length, query_max_length, prompt)
            forward, multiple = self._llm_scores, LLM_PAD_MULTIPLE
        else:
            features = cross_encoder_features(self.tokenizer, pairs, max_length, query_max_length, self._template)
            forward, multiple = self._cross_scores, None
        self._to(device)
        if self.kind == "llm" and not self._head_checked:
            self._check_head(device)

        @torch.inference_mode()
        def run(batch):
            return forward(pad_features(self.tokenizer, batch, multiple).to(device)).cpu()

        rows = run_sorted(features, [len(f["input_ids"]) for f in features], run, batch_size, device,
                          desc="Scoring", show_progress=show_progress)
        return torch.stack(rows).numpy()

    def _to(self, device: str) -> None:
        if device != self._device:
            self.model.to(device)
            self._device = device

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_name_or_path!r}, kind={self.kind!r}, dtype={str(self.dtype).replace('torch.', '')})"


def rank_scores(scores: Sequence[float], passages: Sequence[str], ids: Sequence[str] | None = None,
                top_k: int | None = None) -> list[Hit]:
    """Hits sorted by descending score (ties keep input order), ranks from 1, cut to ``top_k``.

    Example:
        >>> [(h.id, h.rank) for h in rank_scores([0.1, 0.9, 0.5], ["a", "b", "c"], top_k=2)]
        [('1', 1), ('2', 2)]
    """
    if ids is not None and len(ids) != len(passages):
        raise ValueError(f"ids has {len(ids)} entries for {len(passages)} passages")
    positive_int(top_k, "top_k", allow_none=True)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top_k]
    return [Hit(id=str(ids[i]) if ids is not None else str(int(i)), score=float(scores[i]), rank=r + 1, text=passages[i])
            for r, i in enumerate(order)]


def _merge_peft(model, peft_path: str):
    try:
        from peft import PeftModel
    except ImportError as e:
        raise ImportError("peft_path needs the peft package: pip install peft") from e
    return PeftModel.from_pretrained(model, peft_path).merge_and_unload().eval()
