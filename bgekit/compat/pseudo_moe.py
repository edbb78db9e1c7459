"""FlagEmbedding's ``FlagPseudoMoEModel``: a decoder-only embedder whose remote-code model routes by domain.

The domain (``"general"``, ``"coding"``, ``"reasoning"``...) comes from the call's ``domain_for_pseudo_moe``, else
its ``domain``, else the constructor's ``domain_for_pseudo_moe``. As in FlagEmbedding, a model with a
``set_domain`` method gets ``set_domain(domain)`` before encoding, and a model whose forward takes ``domain``
gets it on every forward pass. Unlike FlagEmbedding, a domain for a model that has neither raises ValueError
(FlagEmbedding ignores it silently), and the forward signature is read instead of retrying after a TypeError.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from bgekit.compat.embedder import FlagLLMModel, _check_last_token
from bgekit.registry import INSTRUCT_QUERY


class FlagPseudoMoEModel(FlagLLMModel):
    """Pseudo-MoE decoder-only embedders such as geevec-embeddings (FlagEmbedding's ``FlagPseudoMoEModel``).

    Defaults differ from ``FlagLLMModel`` as in FlagEmbedding: ``use_bf16=True``, ``trust_remote_code=True``.
    ``encode`` / ``encode_queries`` / ``encode_corpus`` / ``encode_single_device`` take ``domain_for_pseudo_moe``
    (or ``domain``) for one call.

    Example:
        >>> model = FlagPseudoMoEModel("geevec-ai/geevec-embeddings-1.0-lite", domain_for_pseudo_moe="coding")  # doctest: +SKIP
        >>> model.encode_queries(["sort a list"], domain_for_pseudo_moe="reasoning")                           # doctest: +SKIP
    """

    def __init__(
        self,
        model_name_or_path: str,
        normalize_embeddings: bool = True,
        use_fp16: bool = False,
        use_bf16: bool = True,
        query_instruction_for_retrieval: str | None = None,
        query_instruction_format: str = INSTRUCT_QUERY,
        devices: Any = None,
        trust_remote_code: bool = True,
        cache_dir: str | None = None,
        batch_size: int = 256,
        query_max_length: int = 512,
        passage_max_length: int = 512,
        convert_to_numpy: bool = True,
        truncate_dim: int | None = None,
        domain_for_pseudo_moe: str | None = None,
        pooling_method: str = "last_token",
        passage_instruction_for_retrieval: str | None = None,
        passage_instruction_format: str = "{}{}",
    ):
        _check_last_token(pooling_method)
        super().__init__(model_name_or_path, normalize_embeddings=normalize_embeddings, use_fp16=use_fp16,
                         use_bf16=use_bf16, query_instruction_for_retrieval=query_instruction_for_retrieval,
                         query_instruction_format=query_instruction_format, devices=devices,
                         pooling_method=pooling_method, trust_remote_code=trust_remote_code, cache_dir=cache_dir,
                         batch_size=batch_size, query_max_length=query_max_length,
                         passage_max_length=passage_max_length, convert_to_numpy=convert_to_numpy,
                         truncate_dim=truncate_dim, passage_instruction_for_retrieval=passage_instruction_for_retrieval,
                         passage_instruction_format=passage_instruction_format)
        self.domain_for_pseudo_moe = domain_for_pseudo_moe
        self._has_set_domain = callable(getattr(self.model, "set_domain", None))
        self._forward_takes_domain = _takes_domain(self.model)
        self._in_call = False
        self._route(domain_for_pseudo_moe)

    def _route(self, domain: str | None) -> None:
        """Send ``domain`` to the model: ``set_domain`` and/or the forward's ``domain`` argument."""
        self.forward_kwargs = {}
        if domain is None:
            return
        if not isinstance(domain, str):
            raise TypeError(f"domain_for_pseudo_moe must be a string such as 'general', got {domain!r}")
        if not (self._has_set_domain or self._forward_takes_domain):
            raise ValueError(f"domain_for_pseudo_moe={domain!r}, but {type(self.model).__name__} has no set_domain "
                             "method and its forward takes no domain argument, so the domain would be ignored")
        if self._has_set_domain:
            self.model.set_domain(domain)
        if self._forward_takes_domain:
            self.forward_kwargs = {"domain": domain}

    def _routed(self, domain_for_pseudo_moe: str | None, domain: str | None, call: Callable, *args: Any, **kwargs: Any):
        if self._in_call:  # a nested call (encode_queries -> encode): the outer call has routed already
            return call(*args, **kwargs)
        chosen = next((d for d in (domain_for_pseudo_moe, domain, self.domain_for_pseudo_moe) if d is not None), None)
        self._route(chosen)
        self._in_call = True
        try:
            return call(*args, **kwargs)
        finally:
            self._in_call = False

    def encode(self, sentences, *args: Any, domain_for_pseudo_moe: str | None = None, domain: str | None = None,
               **kwargs: Any):
        """:meth:`FlagLLMModel.encode` with this call's domain."""
        return self._routed(domain_for_pseudo_moe, domain, super().encode, sentences, *args, **kwargs)

    def encode_queries(self, queries, *args: Any, domain_for_pseudo_moe: str | None = None, domain: str | None = None,
                       **kwargs: Any):
        """:meth:`FlagLLMModel.encode_queries` with this call's domain."""
        return self._routed(domain_for_pseudo_moe, domain, super().encode_queries, queries, *args, **kwargs)

    def encode_corpus(self, corpus, *args: Any, domain_for_pseudo_moe: str | None = None, domain: str | None = None,
                      **kwargs: Any):
        """:meth:`FlagLLMModel.encode_corpus` with this call's domain."""
        return self._routed(domain_for_pseudo_moe, domain, super().encode_corpus, corpus, *args, **kwargs)

    def encode_single_device(self, sentences, *args: Any, domain_for_pseudo_moe: str | None = None,
                             domain: str | None = None, **kwargs: Any):
        """:meth:`FlagLLMModel.encode_single_device` with this call's domain."""
        return self._routed(domain_for_pseudo_moe, domain, super().encode_single_device, sentences, *args, **kwargs)


def _takes_domain(model: Any) -> bool:
    """Whether ``model.forward`` takes ``domain``: a named parameter, or ``**kwargs`` of a remote-code model
    (transformers' own models take ``**kwargs`` for attention options and would ignore a domain)."""
    params = inspect.signature(model.forward).parameters.values()
    remote = type(model).__module__.startswith("transformers_modules")
    return any(p.name == "domain" or (remote and p.kind is p.VAR_KEYWORD) for p in params)
