"""Arguments of reranker training, with FlagEmbedding's names for the options it shares.

Three dataclasses parsed together by :func:`parse_reranker_args` (each option also as ``--kebab-case``; an
unknown option is an error naming it), plus every Hugging Face ``TrainingArguments`` option.

Differences from FlagEmbedding, on purpose:

- one entry point for every kind; the kind comes from the model (a reranker folder's files, or an embedder /
  plain language model, which gets a new score head): ``--model_class`` forces it, and FlagEmbedding's
  ``--model_type encoder|decoder`` is read the same way;
- query / passage instructions default to what the inference classes use for that kind (LLM and layerwise
  rerankers: "A: " / "B: "; FlagEmbedding trains without them but scores with them);
- inputs are cut exactly as at inference: the query to ``query_max_len`` tokens, the pair to
  ``query_max_len + passage_max_len`` (saved as the model's max length); ``--max_len`` is unused, as in
  FlagEmbedding;
- ``--use_lora`` defaults to yes for LLM rerankers only; a LoRA run saves the merged model plus ``adapter/``;
- ``--sub_batch_size`` works (FlagEmbedding: "not implemented yet"); ``--cache_path`` is unused (jsonl is
  read directly); the model options shared with embedder training (``--from_peft``, ``--raw_peft``,
  ``--use_flash_attn``, ``--token`` ...) are checked and applied as described in :mod:`bgekit.train.adapters`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bgekit.errors import positive_int
from bgekit.train.args import GroupTrainingArguments, SharedModelArguments

# FlagEmbedding's model_class values (its reranker runner modules) -> our kinds
RERANKER_MODEL_CLASSES = {"encoder-only-base": "cross-encoder", "decoder-only-base": "llm",
                          "decoder-only-layerwise": "layerwise"}
MODEL_TYPES = {"encoder": "cross-encoder", "decoder": "llm", "from_raw_model": None, "from_finetuned_model": None}


@dataclass
class RerankerModelArguments(SharedModelArguments):
    """Which model to train, and how (LoRA, layerwise heads)."""

    model_class: str | None = field(default=None, metadata={
        "help": "Force the kind: " + ", ".join(RERANKER_MODEL_CLASSES) + " (default: resolved from the model).",
        "choices": list(RERANKER_MODEL_CLASSES)})
    model_type: str | None = field(default=None, metadata={
        "help": "FlagEmbedding's: encoder / decoder (the kind), or from_raw_model / from_finetuned_model (layerwise).",
        "choices": list(MODEL_TYPES)})
    start_layer: int = field(default=8, metadata={"help": "Layerwise from a raw model: first layer with a score head."})
    head_multi: bool = field(default=False, metadata={"help": "Layerwise from a raw model: one head per layer (else one shared)."})
    head_type: str = field(default="simple", metadata={"help": "Layerwise head type (only 'simple').", "choices": ["simple"]})
    cutoff_layers: list[int] | None = field(default=None, metadata={"help": "Layerwise: the exit layers to train (default: every layer with a head)."})


@dataclass
class RerankerDataArguments:
    """Training data and how pairs become model inputs."""

    train_data: list[str] = field(default=None, metadata={"help": "jsonl files or folders of them.", "aliases": ["--data"]})
    cache_path: str | None = field(default=None, metadata={"help": "Unused (jsonl is read directly)."})
    train_group_size: int = field(default=8, metadata={"help": "Passages per query: one positive plus negatives."})
    query_max_len: int = field(default=32, metadata={"help": "Query tokens."})
    passage_max_len: int = field(default=128, metadata={"help": "Pair tokens are query_max_len + passage_max_len."})
    max_len: int = field(default=512, metadata={"help": "Unused, as in FlagEmbedding."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batches to a multiple of this (LLM kinds: 8, as at inference)."})
    max_example_num_per_dataset: int = field(default=100_000_000, metadata={"help": "Random subset of larger files."})
    query_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Query instruction (default: the kind's)."})
    query_instruction_format: str = field(default="{}{}", metadata={"help": "Template: instruction, query."})
    passage_instruction_for_rerank: str | None = field(default=None, metadata={"help": "Passage instruction (default: the kind's)."})
    passage_instruction_format: str = field(default="{}{}", metadata={"help": "Template: instruction, passage."})
    no_instructions: bool = field(default=False, metadata={"help": "Train without any instruction (not even the kind's default)."})
    knowledge_distillation: bool = field(default=False, metadata={"help": "Distil from pos_scores / neg_scores."})
    shuffle_ratio: float = field(default=0.0, metadata={"help": "Probability of shuffling a long positive's thirds."})
    sep_token: str = field(default="\n", metadata={"help": "Accepted; LLM inputs always use the inference separator '\\n'."})

    def __post_init__(self) -> None:
        if not self.train_data:
            raise ValueError("--train_data is required: one or more jsonl files or folders")
        for name in ("train_group_size", "query_max_len", "passage_max_len", "max_example_num_per_dataset"):
            positive_int(getattr(self, name), f"--{name}")
        if not 0.0 <= self.shuffle_ratio <= 1.0:
            raise ValueError(f"--shuffle_ratio must be in [0, 1], got {self.shuffle_ratio}")
        self.query_instruction_format = self.query_instruction_format.replace("\\n", "\n")
        self.passage_instruction_format = self.passage_instruction_format.replace("\\n", "\n")
        if self.sep_token.replace("\\n", "\n") != "\n":
            raise ValueError(f"--sep_token {self.sep_token!r}: bgekit's LLM rerankers always join query and passage "
                             "with '\\n' at inference, so training uses it too")

    @property
    def max_length(self) -> int:
        """Tokens of a whole pair (the saved model's max length)."""
        return self.query_max_len + self.passage_max_len


@dataclass
class RerankerTrainingArguments(GroupTrainingArguments):
    """``TrainingArguments`` plus the reranker options."""

    layerwise_self_distill: bool = field(default=True, metadata={"help": "Layerwise without teacher scores: the deepest trained layer teaches the others."})


def parse_reranker_args(argv: list[str] | None = None):
    """Parse command-line style arguments into (model, data, training) argument dataclasses.

    Raises:
        ValueError: an unknown option (named) or a bad value.

    Example:
        >>> m, d, t = parse_reranker_args(["--model", "BAAI/bge-reranker-v2-m3", "--train_data", "x.jsonl",
        ...                                "--output-dir", "out", "--train-group-size", "8"])
        >>> m.model_name_or_path, d.train_data, d.train_group_size
        ('BAAI/bge-reranker-v2-m3', ['x.jsonl'], 8)
    """
    from bgekit.train.args import parse_dataclass_args

    return parse_dataclass_args((RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments), argv,
                                "bgekit train reranker")
