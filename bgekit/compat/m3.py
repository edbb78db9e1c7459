"""FlagEmbedding's ``BGEM3FlagModel`` over :class:`bgekit.m3.M3Embedder`: the reference signature, defaults and outputs.

Differences on purpose are listed in docs/compat.md ("BGE-M3").
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bgekit import scoring
from bgekit.batching import check_batch_size, check_texts
from bgekit.compat import pool as _pool
from bgekit.compat.abstract import AbsEmbedder
from bgekit.compat.base import native_kwargs
from bgekit.encoder import _check_length
from bgekit.m3 import M3Embedder, _check_outputs
from bgekit.prompts import apply_instruction
from bgekit.registry import ModelSpec
from bgekit.types import SparseVector


class BGEM3FlagModel(M3Embedder, AbsEmbedder):
    """FlagEmbedding's ``BGEM3FlagModel``: same signature, defaults and outputs (differences: docs/compat.md).

    ``encode*`` return ``{"dense_vecs", "lexical_weights", "colbert_vecs"}`` with None for outputs not asked
    for; lexical weights are ``{str(token_id): weight}`` dicts. ``convert_to_numpy`` is accepted and ignored
    (outputs are always numpy), as in the reference.

    Example:
        >>> model = BGEM3FlagModel("BAAI/bge-m3", use_fp16=True)                       # doctest: +SKIP
        >>> out = model.encode(["What is BGE M3?"], return_sparse=True)                # doctest: +SKIP
        >>> model.compute_score([["What is BGE M3?", "BGE M3 is an embedding model."]])  # doctest: +SKIP
    """

    KIND = "m3"
    DEFAULT_POOLING_METHOD = "cls"

    def __init__(
        self,
        model_name_or_path: str,
        normalize_embeddings: bool = True,
        use_fp16: bool = True,
        use_bf16: bool = False,
        query_instruction_for_retrieval: str | None = None,
        query_instruction_format: str = "{}{}",
        devices: Any = None,
        pooling_method: str = "cls",
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
        colbert_dim: int = -1,
        batch_size: int = 256,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        truncate_dim: int | None = None,
        convert_to_numpy: bool = True,
        passage_instruction_for_retrieval: str | None = None,
        passage_instruction_format: str = "{}{}",
    ):
        super().__init__(model_name_or_path, colbert_dim=colbert_dim, spec=ModelSpec(self.KIND, pooling_method),
                         **native_kwargs(locals()))
        self.return_dense, self.return_sparse, self.return_colbert_vecs = return_dense, return_sparse, return_colbert_vecs
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16

    def encode_queries(self, queries, batch_size: int | None = None, max_length: int | None = None,
                       return_dense: bool | None = None, return_sparse: bool | None = None,
                       return_colbert_vecs: bool | None = None, convert_to_numpy: bool | None = None,
                       pad_to_multiple_of: int | None = None, show_progress: bool | None = None) -> dict:
        """Encode queries (query instruction applied, query_max_length); see :meth:`encode`."""
        return self.encode(queries, batch_size, max_length or self.query_max_length, return_dense, return_sparse,
                           return_colbert_vecs, self.query_instruction_for_retrieval, self.query_instruction_format,
                           convert_to_numpy, pad_to_multiple_of, show_progress)

    def encode_corpus(self, corpus, batch_size: int | None = None, max_length: int | None = None,
                      return_dense: bool | None = None, return_sparse: bool | None = None,
                      return_colbert_vecs: bool | None = None, convert_to_numpy: bool | None = None,
                      pad_to_multiple_of: int | None = None, show_progress: bool | None = None) -> dict:
        """Encode passages (passage instruction applied, passage_max_length); see :meth:`encode`."""
        return self.encode(corpus, batch_size, max_length or self.passage_max_length, return_dense, return_sparse,
                           return_colbert_vecs, self.passage_instruction_for_retrieval, self.passage_instruction_format,
                           convert_to_numpy, pad_to_multiple_of, show_progress)

    def encode(self, sentences, batch_size: int | None = None, max_length: int | None = None,
               return_dense: bool | None = None, return_sparse: bool | None = None,
               return_colbert_vecs: bool | None = None, instruction: str | None = None,
               instruction_format: str | None = None, convert_to_numpy: bool | None = None,
               pad_to_multiple_of: int | None = None, show_progress: bool | None = None) -> dict:
        """Encode texts.

        Args:
            sentences: a string or a list of strings.
            batch_size, max_length: default to the constructor's (max_length: passage_max_length).
            return_dense / return_sparse / return_colbert_vecs: which outputs; default to the constructor's.
            instruction / instruction_format: prepended to every text before tokenizing.
            convert_to_numpy: ignored (outputs are numpy), as in the reference.
            pad_to_multiple_of: pad batches to a multiple of this many tokens.
            show_progress: progress bar; None shows one for 256 texts or more.

        Returns:
            ``{"dense_vecs": (N, D) array, "lexical_weights": [{str(id): weight}], "colbert_vecs": [(n_i, C) array]}``;
            None for outputs not asked for. A string input gives a (D,) vector, one dict and one 2-D array.
        """
        texts, single = check_texts(sentences)
        if instruction is not None:
            texts = [apply_instruction(instruction_format or "{}{}", instruction, t) for t in texts]
        return self._reference_outputs(texts, single, (return_dense, return_sparse, return_colbert_vecs), batch_size,
                                       max_length or self.passage_max_length, pad_to_multiple_of, show_progress, None)

    def encode_single_device(self, sentences, batch_size: int = 256, max_length: int = 512, return_dense: bool = True,
                             return_sparse: bool = False, return_colbert_vecs: bool = False, device: str | None = None,
                             pad_to_multiple_of: int | None = None, show_progress: bool | None = None) -> dict:
        """:meth:`encode` on one device (default: the first target device), no instruction added."""
        texts, single = check_texts(sentences)
        return self._reference_outputs(texts, single, (return_dense, return_sparse, return_colbert_vecs),
                                       check_batch_size(batch_size), _check_length(max_length, "max_length"),
                                       pad_to_multiple_of, show_progress, device or self.target_devices[0])

    def _reference_outputs(self, texts, single, flags, batch_size, max_length, pad_to_multiple_of, show_progress,
                           device) -> dict:
        """The reference's output dict for ``texts`` (``flags``: return_dense, return_sparse, return_colbert_vecs)."""
        defaults = (self.return_dense, self.return_sparse, self.return_colbert_vecs)
        outputs = _check_outputs([k for k, v, d in zip(("dense", "sparse", "colbert"), flags, defaults)
                                  if (d if v is None else v)])
        rows = self._encode_rows(texts, outputs, batch_size, max_length, pad_to_multiple_of, show_progress, device)
        dense, sparse, colbert = self._collect(rows, outputs)
        if sparse is not None:
            sparse = [_reference_dict(r["sparse"], r["sparse_order"]) for r in rows]
        if single:
            dense, sparse, colbert = (None if x is None else x[0] for x in (dense, sparse, colbert))
        return {"dense_vecs": dense, "lexical_weights": sparse, "colbert_vecs": colbert}

    def compute_score(self, sentence_pairs, batch_size: int | None = None, max_query_length: int | None = None,
                      max_passage_length: int | None = None, weights_for_different_modes: Sequence[float] | None = None,
                      show_progress: bool | None = None) -> dict:
        """Scores of (query, passage) pairs in every mode: "colbert", "sparse", "dense", "sparse+dense",
        "colbert+sparse+dense" (weighted means with ``weights_for_different_modes = [dense, sparse, colbert]``).

        Returns:
            mode -> list of floats; a single ``[query, passage]`` pair gives mode -> float.
        """
        return self.compute_score_single_device(sentence_pairs, batch_size, max_query_length, max_passage_length,
                                                weights_for_different_modes, None, show_progress)

    def compute_score_single_device(self, sentence_pairs, batch_size: int | None = None,
                                    max_query_length: int | None = None, max_passage_length: int | None = None,
                                    weights_for_different_modes: Sequence[float] | None = None,
                                    device: str | None = None, show_progress: bool | None = None) -> dict:
        """:meth:`compute_score` on one device (None: the target devices)."""
        single = _is_single_pair(sentence_pairs)
        scores = self.score_pairs([sentence_pairs] if single else sentence_pairs, batch_size, max_query_length,
                                  max_passage_length, weights_for_different_modes, show_progress, device)
        if single:
            return {mode: float(v[0]) for mode, v in scores.items()}
        return {mode: v.tolist() for mode, v in scores.items()}

    _compute_score_multi_process_worker = staticmethod(_pool.make_worker("compute_score_single_device"))

    def compute_score_multi_process(self, sentence_pairs, pool, **kwargs: Any) -> dict:
        """Scores of ``sentence_pairs`` split into one chunk per device of ``pool`` (mode -> list, in order)."""
        parts = _pool.run_chunks(self, sentence_pairs, pool, kwargs, method="compute_score_single_device")
        return self._concatenate_compute_score_results_from_multi_process(parts)

    def _concatenate_results_from_multi_process(self, results_list: list) -> dict:
        """Per-device ``encode`` dicts -> one dict (None stays None)."""
        merged: dict = {}
        for key in ("dense_vecs", "lexical_weights", "colbert_vecs"):
            parts = [r[key] for r in results_list]
            if not parts or any(p is None for p in parts):
                merged[key] = None
            elif key == "dense_vecs":
                merged[key] = np.concatenate(parts, axis=0)
            else:
                merged[key] = [x for p in parts for x in p]
        return merged

    @staticmethod
    def _concatenate_compute_score_results_from_multi_process(results_list: list) -> dict:
        """Per-device ``compute_score`` dicts -> one dict of lists."""
        return {mode: [x for r in results_list for x in r[mode]] for mode in scoring.MODES}

    def compute_lexical_matching_score(self, lexical_weights_1, lexical_weights_2):
        """Lexical match of two weight dicts (a float), or of every pair from two lists (a float64 matrix)."""
        one = (dict, SparseVector)
        if isinstance(lexical_weights_1, one) and isinstance(lexical_weights_2, one):
            return scoring.lexical_score(lexical_weights_1, lexical_weights_2)
        if isinstance(lexical_weights_1, list) and isinstance(lexical_weights_2, list):
            return scoring.lexical_scores(lexical_weights_1, lexical_weights_2)
        raise TypeError("lexical_weights_1 and lexical_weights_2 must both be dicts or both be lists of dicts, got "
                        f"{type(lexical_weights_1).__name__} and {type(lexical_weights_2).__name__}")

    def colbert_score(self, q_reps, p_reps):
        """ColBERT max-sim of one query's vectors (m, C) with one passage's (n, C), as a 0-d torch tensor."""
        import torch

        return torch.tensor(scoring.maxsim(q_reps, p_reps), dtype=torch.float32)

    def convert_id_to_token(self, lexical_weights):
        """Replace token-id keys by the decoded token text.

        Like the reference, ids that decode to the same text collide (the later key wins) and a list of one
        dict gives a dict.
        """
        items = [lexical_weights] if isinstance(lexical_weights, (dict, SparseVector)) else lexical_weights
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"lexical_weights must be a dict or a list of dicts, got {type(lexical_weights).__name__}")
        converted = []
        for i, item in enumerate(items):
            if isinstance(item, SparseVector):
                item = item.to_dict()
            if not isinstance(item, dict):
                raise TypeError(f"lexical_weights[{i}] must be a dict of token id -> weight, got {type(item).__name__}")
            converted.append({self.tokenizer.decode([int(k)]): w for k, w in item.items()})
        return converted[0] if len(converted) == 1 else converted


def _reference_dict(vec: SparseVector, order: np.ndarray) -> dict[str, float]:
    """FlagEmbedding's lexical-weight dict: str(token id) -> weight, keys in order of first occurrence."""
    return {str(int(vec.indices[k])): float(vec.values[k]) for k in order}

def _is_single_pair(pairs: Any) -> bool:
    return isinstance(pairs, (list, tuple)) and len(pairs) == 2 and all(isinstance(s, str) for s in pairs)
