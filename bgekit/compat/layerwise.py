"""FlagEmbedding's ``LayerWiseFlagLLMReranker`` and ``LightWeightFlagLLMReranker`` over the native
:class:`bgekit.reranker_layerwise.EarlyExitReranker`: FlagEmbedding 1.4.2's signatures, defaults and outputs,
including its head quirks (see docs/compat.md, "Layerwise and lightweight rerankers").
"""
from __future__ import annotations

import warnings
from typing import Any

from bgekit.compat.abstract import AbsReranker, passage_max_length_note
from bgekit.reranker_layerwise import EarlyExitReranker, check_layers

def _no_peft(peft_path: str | None) -> None:
    if peft_path is not None:
        raise NotImplementedError("peft_path is not supported for layerwise/lightweight rerankers; merge the adapter "
                                  "into the weights first (peft: model.merge_and_unload().save_pretrained(folder))")


class _FlagEarlyExit(EarlyExitReranker, AbsReranker):
    """What both reference classes share: cutoff layers handled the reference's way, flat list for one layer."""

    def _reference_heads(self, kept: list[int], states: list[int]) -> list[int]:
        raise NotImplementedError

    def _reference_states(self, cutoff_layers: Any) -> tuple[list[int], list[int]]:
        """Exit states (sorted, deduplicated) and the head the reference applies to each of them.

        Layers without a head are dropped with a warning; none left raises ValueError.
        """
        layers = [self.model.num_layers] if cutoff_layers is None else check_layers(cutoff_layers)
        valid = self.model.valid_layers()
        dropped = [x for x in layers if x not in valid]
        if dropped:
            warnings.warn(f"cutoff layers {dropped} have no trained head and are dropped (valid: {valid})", UserWarning,
                          stacklevel=4)
        kept = [x for x in layers if x in valid]
        if not kept:
            raise ValueError(f"cutoff_layers must be in [{valid[0]}, {valid[-1]}] (valid: {valid}), got {layers}")
        states = sorted(set(kept))
        return states, self._reference_heads(kept, states)

    def _compute(self, sentence_pairs, cutoff_layers, batch_size, query_max_length, max_length, prompt, normalize,
                 compress_ratio=None, compress_layers=None, device=None, instructions=True):
        states, heads = self._reference_states(self.cutoff_layers if cutoff_layers is None else cutoff_layers)
        saved = self.query_instruction_for_rerank, self.passage_instruction_for_rerank
        if not instructions:  # compute_score_single_gpu: the pairs come with their instructions
            self.query_instruction_for_rerank = self.passage_instruction_for_rerank = None
        try:
            rows = self._scores(sentence_pairs, states, heads, batch_size, max_length, query_max_length, prompt,
                                normalize, compress_ratio, compress_layers, None, device)
        finally:
            self.query_instruction_for_rerank, self.passage_instruction_for_rerank = saved
        if not rows[0]:
            return []
        return rows[0] if len(rows) == 1 else rows


class LayerWiseFlagLLMReranker(_FlagEarlyExit):
    """bge-reranker-v2-minicpm-layerwise with FlagEmbedding 1.4.2's ``LayerWiseFlagLLMReranker`` interface.

    ``compute_score`` returns one list of scores for one cutoff layer, a list of lists for several. Like the
    reference, heads are taken in the order ``cutoff_layers`` gives while states come in layer order, so pass
    them sorted (or use :meth:`EarlyExitReranker.score_layers`, which always pairs each layer with its head).
    ``use_fp16=False, use_bf16=False`` warns and turns on fp16, which runs as fp32 on CPU.

    Example:
        >>> rr = LayerWiseFlagLLMReranker("BAAI/bge-reranker-v2-minicpm-layerwise", use_fp16=True)  # doctest: +SKIP
        >>> rr.compute_score(["what is panda?", "The giant panda is a bear."], cutoff_layers=[28])      # doctest: +SKIP
        [4.1]
    """

    MODEL_TYPE = "minicpm"

    def __init__(self, model_name_or_path: str, peft_path: str | None = None, use_fp16: bool = False,
                 use_bf16: bool = False, query_instruction_for_rerank: str | None = "A: ",
                 query_instruction_format: str = "{}{}", passage_instruction_for_rerank: str | None = "B: ",
                 passage_instruction_format: str = "{}{}", cache_dir: str | None = None, trust_remote_code: bool = False,
                 devices: Any = None, cutoff_layers: Any = None, prompt: str | None = None, batch_size: int = 128,
                 query_max_length: int | None = None, max_length: int = 512, normalize: bool = False,
                 passage_max_length: int | None = None):
        _no_peft(peft_path)
        passage_max_length_note(passage_max_length)
        if not use_fp16 and not use_bf16:
            warnings.warn("use_fp16 and use_bf16 are both False; like FlagEmbedding, use_fp16 is set to True "
                          "(on CPU the model still runs in fp32)", UserWarning, stacklevel=2)
            use_fp16 = True
        super().__init__(model_name_or_path, devices=devices, use_fp16=use_fp16, use_bf16=use_bf16,
                         query_instruction=query_instruction_for_rerank, query_instruction_format=query_instruction_format,
                         passage_instruction=passage_instruction_for_rerank,
                         passage_instruction_format=passage_instruction_format, prompt=prompt, batch_size=batch_size,
                         query_max_length=query_max_length, max_length=max_length, normalize=normalize,
                         trust_remote_code=trust_remote_code, cache_dir=cache_dir)
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16
        self.cutoff_layers = None if cutoff_layers is None else check_layers(cutoff_layers)

    def _reference_heads(self, kept: list[int], states: list[int]) -> list[int]:
        return [self.model.head_index(x) for x in kept[:len(states)]]  # the given order, not the states' order

    def compute_score(self, sentence_pairs, batch_size: int | None = None, query_max_length: int | None = None,
                      max_length: int | None = None, cutoff_layers: Any = None, prompt: str | None = None,
                      normalize: bool | None = None, use_dataloader: bool = False, num_workers: int | None = None):
        """Scores of one pair or a list of pairs (a list with one float for one pair).

        Args:
            sentence_pairs: [query, passage] or a list of them. An empty list gives [].
            cutoff_layers: exit layers (None: the constructor's, else the last layer); layers outside
                [start_layer, num_hidden_layers] are dropped with a warning.
            use_dataloader, num_workers: accepted for compatibility; they change nothing.
            Others: override the constructor's defaults.
        """
        return self._compute(sentence_pairs, cutoff_layers, batch_size, query_max_length, max_length, prompt, normalize)

    def compute_score_single_gpu(self, sentence_pairs, batch_size: int | None = None,
                                 query_max_length: int | None = None, max_length: int | None = None,
                                 cutoff_layers: Any = None, prompt: str | None = None, normalize: bool | None = None,
                                 use_dataloader: bool = False, num_workers: int | None = None,
                                 device: str | None = None):
        """:meth:`compute_score` on one device (default: the first target device); pairs used as given."""
        return self._compute(sentence_pairs, cutoff_layers, batch_size, query_max_length, max_length, prompt, normalize,
                             device=device or self.target_devices[0], instructions=False)


class LightWeightFlagLLMReranker(_FlagEarlyExit):
    """bge-reranker-v2.5-gemma2-lightweight with FlagEmbedding 1.4.2's ``LightWeightFlagLLMReranker`` interface.

    Like the reference, the i-th collected exit state (in layer order) is scored with head i, whatever its layer;
    with the default single cutoff (the last layer) that is the head of ``start_layer``. Token compression by
    ``compress_ratio`` happens only before the layer indices in ``compress_layers`` (default [8]).
    """

    MODEL_TYPE = "cost_wise_gemma"

    def __init__(self, model_name_or_path: str, peft_path: str | None = None, use_fp16: bool = False,
                 use_bf16: bool = False, query_instruction_for_rerank: str | None = "A: ",
                 query_instruction_format: str = "{}{}", passage_instruction_for_rerank: str | None = "B: ",
                 passage_instruction_format: str = "{}{}", cache_dir: str | None = None, trust_remote_code: bool = False,
                 devices: Any = None, cutoff_layers: Any = None, compress_layers: Any = (8,), compress_ratio: int = 1,
                 prompt: str | None = None, batch_size: int = 128, query_max_length: int | None = None,
                 max_length: int = 512, normalize: bool = False, passage_max_length: int | None = None):
        _no_peft(peft_path)
        passage_max_length_note(passage_max_length)
        super().__init__(model_name_or_path, devices=devices, use_fp16=use_fp16, use_bf16=use_bf16,
                         query_instruction=query_instruction_for_rerank, query_instruction_format=query_instruction_format,
                         passage_instruction=passage_instruction_for_rerank,
                         passage_instruction_format=passage_instruction_format, prompt=prompt,
                         compress_ratio=compress_ratio, compress_layers=compress_layers, batch_size=batch_size,
                         query_max_length=query_max_length, max_length=max_length, normalize=normalize,
                         trust_remote_code=trust_remote_code, cache_dir=cache_dir)
        self.use_fp16, self.use_bf16 = use_fp16, use_bf16
        self.cutoff_layers = None if cutoff_layers is None else check_layers(cutoff_layers)

    def _reference_heads(self, kept: list[int], states: list[int]) -> list[int]:
        return list(range(len(states)))  # by position among the collected states

    def compute_score(self, sentence_pairs, batch_size: int | None = None, query_max_length: int | None = None,
                      max_length: int | None = None, cutoff_layers: Any = None, compress_layer: Any = None,
                      compress_layers: Any = None, compress_ratio: int | None = None, prompt: str | None = None,
                      normalize: bool | None = None):
        """Scores of one pair or a list of pairs (a list with one float for one pair).

        Args:
            sentence_pairs: [query, passage] or a list of them. An empty list gives [].
            cutoff_layers: exit layers (None: the constructor's, else the last layer); layers without a head
                are dropped with a warning.
            compress_ratio / compress_layers: token compression (None: the constructor's).
            compress_layer: deprecated spelling of compress_layers.
            Others: override the constructor's defaults.
        """
        if compress_layer is not None:
            warnings.warn("compress_layer is deprecated; use compress_layers", DeprecationWarning, stacklevel=2)
            compress_layers = compress_layer
        return self._compute(sentence_pairs, cutoff_layers, batch_size, query_max_length, max_length, prompt, normalize,
                             compress_ratio, compress_layers)

    def compute_score_single_gpu(self, sentence_pairs, batch_size: int | None = None,
                                 query_max_length: int | None = None, max_length: int | None = None,
                                 cutoff_layers: Any = None, compress_layer: Any = None, compress_layers: Any = None,
                                 compress_ratio: int | None = None, prompt: str | None = None,
                                 normalize: bool | None = None, device: str | None = None):
        """:meth:`compute_score` on one device (default: the first target device); pairs used as given."""
        if compress_layer is not None:
            warnings.warn("compress_layer is deprecated; use compress_layers", DeprecationWarning, stacklevel=2)
            compress_layers = compress_layer
        return self._compute(sentence_pairs, cutoff_layers, batch_size, query_max_length, max_length, prompt, normalize,
                             compress_ratio, compress_layers, device or self.target_devices[0], instructions=False)
