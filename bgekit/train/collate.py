"""Embedder batches: TrainGroups -> tokenised queries and passages, exactly as the embedder encodes at inference.

Texts. A query gets the query instruction (an example's ``prompt`` replaces it when a query instruction is
set, and always for ICL models); a passage gets the passage instruction. For ``symmetric_sts`` /
``symmetric_clustering`` examples the passages are formatted like queries (they are compared query to query).
Tokenisation is the embedder's: truncation to query_max_len / passage_max_len, padding to the longest
(optionally to a multiple of ``pad_to_multiple_of``), each sub-batch padded on its own.

ICL. Each query gets 0-5 in-context examples drawn from the other queries of its batch (their instruction,
query and positive; for clustering data the category), formatted with the embedder's
``examples_instruction_format`` and wrapped as :meth:`bgekit.encoder.Embedder.encode_queries` wraps queries,
so training and inference see the same layout (tests/test_train_embedder.py pins it).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from bgekit.prompts import apply_instruction, icl_prefix
from bgekit.train.data import TrainGroup

SYMMETRIC_AS_QUERIES = ("symmetric_sts", "symmetric_clustering")
SYMMETRIC_WITH_EXAMPLES = ("symmetric_sts", "symmetric_clustering", "symmetric_class")
MAX_ICL_EXAMPLES = 5


@dataclass
class IclSettings:
    """In-context example settings (FlagEmbedding's ICL data arguments)."""

    suffix: str = "\n<response>"
    examples_format: str = "<instruct>{}\n<query>{}\n<response>{}"
    example_query_max_len: int = 64
    example_passage_max_len: int = 96
    use_examples: bool = True


@dataclass
class EmbedderCollator:
    """Turn a list of :class:`~bgekit.train.data.TrainGroup` into the keyword arguments of
    :meth:`bgekit.train.embedder.EmbedderTrainModel.forward`.

    Returns (from ``__call__``): {"queries": [BatchEncoding, ...], "passages": [BatchEncoding, ...],
    "teacher_scores": (B, G) float tensor or None, "no_in_batch_neg": bool}; the lists hold sub-batches of
    ``sub_batch_size`` texts (one when it is None).
    """

    tokenizer: object
    query_max_len: int = 32
    passage_max_len: int = 128
    query_instruction: str | None = None
    query_instruction_format: str = "{}{}"
    passage_instruction: str | None = None
    passage_instruction_format: str = "{}{}"
    pad_to_multiple_of: int | None = None
    sub_batch_size: int | None = None
    icl: IclSettings | None = None
    seed: int = 42

    def __call__(self, groups: list[TrainGroup]) -> dict:
        sizes = {len(g.passages) for g in groups}
        if len(sizes) != 1:
            raise ValueError(f"a batch mixes group sizes {sorted(sizes)}")
        instructions = [self._instruction(g) for g in groups]
        if self.icl is not None:
            queries = self._icl_queries(groups, instructions)
        else:
            queries = [self._with_instruction(g.query, i, self.query_instruction_format) for g, i in zip(groups, instructions)]
        # ICL queries (and ICL-wrapped symmetric passages) are truncated before wrapping; the wrapper is never cut.
        icl_limit = None if self.icl is not None else self.query_max_len
        passages = [t for g, i in zip(groups, instructions) for t in self._passages(g, i)]
        limits = [icl_limit if g.type in SYMMETRIC_AS_QUERIES else self.passage_max_len for g in groups for _ in g.passages]
        return {
            "queries": self._pad(self._tokenize(queries, [icl_limit] * len(queries))),
            "passages": self._pad(self._tokenize(passages, limits)),
            "teacher_scores": self._teacher(groups),
            "no_in_batch_neg": all(g.no_in_batch_neg for g in groups),
        }

    # ------------------------------------------------------------------ texts
    def _instruction(self, group: TrainGroup) -> str | None:
        if group.prompt is not None and (self.query_instruction is not None or self.icl is not None):
            return group.prompt
        return self.query_instruction

    @staticmethod
    def _with_instruction(text: str, instruction: str | None, fmt: str) -> str:
        return text if instruction is None else apply_instruction(fmt, instruction, text)

    def _passages(self, group: TrainGroup, instruction: str | None) -> list[str]:
        if group.type in SYMMETRIC_AS_QUERIES:
            if self.icl is not None:
                return [self.icl_query(p, instruction, "") for p in group.passages]
            return [self._with_instruction(p, instruction, self.query_instruction_format) for p in group.passages]
        return [self._with_instruction(p, self.passage_instruction, self.passage_instruction_format) for p in group.passages]

    def _teacher(self, groups: list[TrainGroup]) -> torch.Tensor | None:
        if all(g.scores is None for g in groups):
            return None
        if any(g.scores is None for g in groups):
            raise ValueError("some examples of a batch have teacher scores and some do not")
        return torch.tensor([g.scores for g in groups], dtype=torch.float32)  # (B, G)

    # ------------------------------------------------------------------ ICL
    def icl_query(self, query: str, instruction: str | None, prefix: str) -> str:
        """One ICL query as the inference embedder builds it: instruction applied, truncated to the token
        budget, then ``prefix + query + suffix`` (tokenised later with special tokens and a larger limit)."""
        tok, suffix = self.tokenizer, self.icl.suffix
        query = self._with_instruction(query, instruction, self.query_instruction_format)
        n_bos = len(tok("<s>", add_special_tokens=False)["input_ids"])
        n_tail = len(tok(f"{suffix}</s>", add_special_tokens=False)["input_ids"])
        budget = self.query_max_len - n_bos - n_tail
        if budget < 1:
            raise ValueError(f"query_max_len={self.query_max_len} leaves no room for the query after the ICL suffix")
        ids = tok(query, truncation=True, max_length=budget, add_special_tokens=False)["input_ids"]
        return prefix + tok.decode(ids) + suffix

    def _clip(self, text: str, n: int) -> str:
        return self.tokenizer.decode(self.tokenizer(text, add_special_tokens=False)["input_ids"][:n])

    def _icl_queries(self, groups: list[TrainGroup], instructions: list[str | None]) -> list[str]:
        icl = self.icl
        rng = random.Random(f"{self.seed}:icl:" + "\x1f".join(g.query for g in groups))
        pool = {}  # group index -> its in-context example
        for i, (g, instruction) in enumerate(zip(groups, instructions)):
            if icl.use_examples or g.type in SYMMETRIC_WITH_EXAMPLES:
                response = g.category if g.type == "symmetric_clustering" and g.category else g.passages[0]
                pool[i] = {"instruct": instruction, "query": self._clip(g.query, icl.example_query_max_len),
                           "response": self._clip(response, icl.example_passage_max_len)}
        out = []
        for i, (g, instruction) in enumerate(zip(groups, instructions)):
            others = [j for j in pool if j != i]  # never a query's own positive
            chosen = rng.sample(others, min(rng.randint(0, MAX_ICL_EXAMPLES), len(others)))
            prefix = icl_prefix([pool[j] for j in chosen], icl.examples_format, instruction)
            out.append(self.icl_query(g.query, instruction, prefix))
        return out

    # ------------------------------------------------------------------ tokens
    def _tokenize(self, texts: list[str], limits: list[int | None]) -> list[dict]:
        """Token rows of ``texts``, each truncated to its own limit (None: not truncated)."""
        rows: list[dict] = [{} for _ in texts]
        for limit in set(limits):
            idx = [i for i, lim in enumerate(limits) if lim == limit]
            enc = self.tokenizer([texts[i] for i in idx], truncation=limit is not None, max_length=limit)
            for n, i in enumerate(idx):
                rows[i] = {k: v[n] for k, v in enc.items()}
        return rows

    def _pad(self, rows: list[dict]) -> list:
        step = self.sub_batch_size or len(rows)
        out = []
        for start in range(0, len(rows), step):
            part = rows[start:start + step]
            cols = {k: [r[k] for r in part] for k in part[0]}
            out.append(self.tokenizer.pad(cols, padding=True, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of))
        return out
