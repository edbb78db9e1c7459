"""Arguments of embedder training, with FlagEmbedding's names for the options it shares.

Three dataclasses, parsed together by :func:`parse_embedder_args` (every option also has a ``--kebab-case``
spelling; an unknown option raises ValueError naming it). Hugging Face ``TrainingArguments`` (learning rate,
epochs, ``--bf16``, ``--gradient_accumulation_steps``, ``--gradient_checkpointing``, ``--deepspeed``,
``--save_steps``, ``--resume_from_checkpoint`` ...) are all accepted.

Differences from FlagEmbedding, on purpose:

- one entry point for every model kind (encoder, BGE-M3, decoder-only, ICL): the kind comes from the model
  (``--model_class`` overrides it; ``--unified_finetuning`` makes any encoder an M3 model);
- ``--sentence_pooling_method``, ``--query_instruction_format`` and ``--use_lora`` default to the model's
  own pooling / template, and to LoRA for decoder-only models;
- a LoRA run always saves the merged model (loads anywhere) plus the adapter in ``adapter/``;
  ``--save_merged_lora_model`` also links that model into ``merged_model/`` (FlagEmbedding's place);
  ``--cache_path`` is unused (jsonl is read directly);
- ``--deepspeed`` and ``--fp16`` without a GPU, ``--use_flash_attn`` without CUDA and flash-attn,
  ``--config_name`` / ``--tokenizer_name`` other than the model folder and slow tokenizers are refused with
  the reason (see :mod:`bgekit.train.adapters` for the LoRA options);
- ``--warmup_ratio`` and ``--overwrite_output_dir`` (gone from transformers 5) are kept for old scripts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments
from bgekit.errors import positive_int

MODEL_CLASSES = {"encoder-only-base": "encoder", "encoder-only-m3": "m3", "decoder-only-base": "decoder",
                 "decoder-only-icl": "icl"}
POOLINGS = ("cls", "mean", "last_token")
KD_LOSS_TYPES = ("kl_div", "m3_kd_loss")


def _default_target_modules() -> list[str]:
    return ["v_proj", "q_proj", "k_proj", "gate_proj", "down_proj", "o_proj", "up_proj"]


@dataclass
class SharedModelArguments:
    """Model options embedder and reranker training share: where the model is, and LoRA."""

    model_name_or_path: str = field(metadata={"help": "Model folder or hub name.", "aliases": ["--model"]})
    cache_dir: str | None = field(default=None, metadata={"help": "Hub cache folder."})
    trust_remote_code: bool | None = field(default=None, metadata={"help": "Default: what the model table says."})
    use_lora: bool | None = field(default=None, metadata={"help": "Train LoRA adapters (default: yes for decoder-only models)."})
    lora_rank: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout."})
    target_modules: list[str] = field(default_factory=_default_target_modules, metadata={"help": "Linear layers given LoRA adapters."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Modules trained fully beside LoRA."})
    save_merged_lora_model: bool = field(default=False, metadata={"help": "Accepted for FlagEmbedding scripts; bgekit always saves the merged model."})
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention kernel while training: eager, sdpa, ... (default: transformers'; eager trains BERT-size models about 1.5x faster on CPU)."})
    use_flash_attn: bool = field(default=False, metadata={"help": "Train with flash_attention_2 (CUDA GPU and the flash-attn package only)."})
    from_peft: str | None = field(default=None, metadata={"help": "Continue training this LoRA adapter folder (instead of a new adapter)."})
    peft_model_path: str = field(default="", metadata={"help": "Same as --from_peft (FlagEmbedding declares it without using it)."})
    raw_peft: list[str] | None = field(default=None, metadata={"help": "LoRA adapter folder(s) merged into the model before training.", "nargs": "+"})
    additional_special_tokens: list[str] | None = field(default=None, metadata={"help": "Tokens added to the tokenizer (the embeddings grow to match).", "nargs": "+"})
    only_merge_lora_model: bool = field(default=False, metadata={"help": "Do not train: merge the LoRA adapter in output_dir into the model and save output_dir/merged_model."})
    config_name: str | None = field(default=None, metadata={"help": "Must be the model folder itself (bgekit reads the config from it)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Must be the model folder itself (bgekit reads the tokenizer from it)."})
    use_fast_tokenizer: bool = field(default=True, metadata={"help": "Must stay true: bgekit trains with the fast tokenizer."})
    use_slow_tokenizer: bool = field(default=False, metadata={"help": "Must stay false: bgekit trains with the fast tokenizer."})
    token: str | None = field(default=None, metadata={"help": "Hugging Face token for hub downloads (sets HF_TOKEN)."})

    def __post_init__(self) -> None:
        from bgekit.train.adapters import check_model_options

        check_model_options(self)


@dataclass
class EmbedderModelArguments(SharedModelArguments):
    """Which model to train, and how (LoRA, M3 heads)."""

    model_class: str | None = field(default=None, metadata={
        "help": "Force the model kind: " + ", ".join(MODEL_CLASSES) + " (default: resolved from the model).",
        "choices": list(MODEL_CLASSES)})
    colbert_dim: int = field(default=-1, metadata={"help": "ColBERT size of new M3 heads (-1: hidden size)."})


@dataclass
class EmbedderDataArguments:
    """Training data and how texts become model inputs."""

    train_data: list[str] = field(default=None, metadata={"help": "jsonl files or folders of them.", "aliases": ["--data"]})
    cache_path: str | None = field(default=None, metadata={"help": "Unused (accepted for FlagEmbedding scripts)."})
    train_group_size: int = field(default=8, metadata={"help": "Passages per query: one positive plus negatives."})
    query_max_len: int = field(default=32, metadata={"help": "Query tokens (longer queries are truncated)."})
    passage_max_len: int = field(default=128, metadata={"help": "Passage tokens; saved as the model's default max length."})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batches to a multiple of this."})
    max_example_num_per_dataset: int = field(default=100_000_000, metadata={"help": "Random subset of larger files."})
    query_instruction_for_retrieval: str | None = field(default=None, metadata={"help": "Query instruction (an example's 'prompt' replaces it)."})
    query_instruction_format: str | None = field(default=None, metadata={"help": "Template: instruction, query (default: the model's)."})
    passage_instruction_for_retrieval: str | None = field(default=None, metadata={"help": "Passage instruction."})
    passage_instruction_format: str | None = field(default=None, metadata={"help": "Template: instruction, passage."})
    knowledge_distillation: bool = field(default=False, metadata={"help": "Distil from pos_scores / neg_scores."})
    shuffle_ratio: float = field(default=0.0, metadata={"help": "Probability of shuffling a long positive's thirds."})
    same_dataset_within_batch: bool = field(default=False, metadata={"help": "Every batch from one file."})
    small_threshold: int = field(default=0, metadata={"help": "Merge a folder's files smaller than this."})
    drop_threshold: int = field(default=0, metadata={"help": "Drop merged small files below this many examples."})
    example_query_max_len: int = field(default=64, metadata={"help": "ICL: tokens of an in-context query."})
    example_passage_max_len: int = field(default=96, metadata={"help": "ICL: tokens of an in-context response."})
    retrieval_use_examples: bool = field(default=True, metadata={"help": "ICL: in-context examples for retrieval data too."})
    icl_suffix_str: str | None = field(default=None, metadata={"help": "ICL: text between query and response (default: the inference one, '\\n<response>')."})

    def __post_init__(self) -> None:
        if not self.train_data:
            raise ValueError("--train_data is required: one or more jsonl files or folders")
        for name in ("train_group_size", "query_max_len", "passage_max_len", "max_example_num_per_dataset"):
            positive_int(getattr(self, name), f"--{name}")
        if not 0.0 <= self.shuffle_ratio <= 1.0:
            raise ValueError(f"--shuffle_ratio must be in [0, 1], got {self.shuffle_ratio}")
        for name in ("query_instruction_format", "passage_instruction_format", "icl_suffix_str"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.replace("\\n", "\n"))


def _no_accelerator() -> bool:
    """True when torch sees no accelerator (CUDA, XPU, MPS, ...): training then runs on the CPU."""
    import torch

    return torch.accelerator.current_accelerator() is None


@dataclass
class GroupTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus what embedder and reranker training share."""

    sub_batch_size: int | None = field(default=None, metadata={"help": "Run the model on chunks of this many texts (embedders) or pairs (rerankers)."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Train into a non-empty output_dir."})
    warmup_ratio: float | None = field(default=None, metadata={"help": "Warmup as a fraction of all steps (sets warmup_steps)."})

    def __post_init__(self) -> None:
        if self.deepspeed and _no_accelerator():
            raise ValueError(f"--deepspeed {self.deepspeed}: DeepSpeed runs on GPUs and this machine has none; drop "
                             "--deepspeed to train on the CPU (ZeRO sharding has nothing to shard here)")
        if (self.fp16 or self.fp16_full_eval) and _no_accelerator():
            raise ValueError("--fp16: fp16 mixed precision needs a GPU and this machine has none; drop --fp16 "
                             "(fp32) or pass --bf16, which runs on this CPU")
        if not self.use_cpu and _no_accelerator():
            # No GPU: say so to the Trainer. Without use_cpu it refuses --bf16 ("You need to assign use_cpu"; bf16
            # on CPU is real and fast here), and processes started by torchrun never form a process group.
            self.use_cpu = True
        if self.warmup_ratio is not None:
            if not 0.0 <= self.warmup_ratio < 1.0:
                raise ValueError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            self.warmup_steps = self.warmup_ratio
        super().__post_init__()
        if self.sub_batch_size is not None and self.sub_batch_size < 1:
            self.sub_batch_size = None


@dataclass
class EmbedderTrainingArguments(GroupTrainingArguments):
    """``TrainingArguments`` plus the embedder loss options."""

    negatives_cross_device: bool = field(default=False, metadata={"help": "Passages of all processes are negatives."})
    temperature: float = field(default=0.02, metadata={"help": "Scores are divided by this."})
    fix_position_embedding: bool = field(default=False, metadata={"help": "Freeze position embeddings."})
    sentence_pooling_method: str | None = field(default=None, metadata={"help": "cls, mean or last_token (default: the model's).", "choices": list(POOLINGS)})
    normalize_embeddings: bool = field(default=True, metadata={"help": "L2-normalise embeddings."})
    kd_loss_type: str = field(default="kl_div", metadata={"help": "kl_div or m3_kd_loss.", "choices": list(KD_LOSS_TYPES)})
    use_mrl: bool = field(default=False, metadata={"help": "Matryoshka: train the leading mrl_dims dimensions."})
    mrl_dims: list[int] = field(default_factory=list, metadata={"help": "Matryoshka dimensions."})
    unified_finetuning: bool = field(default=False, metadata={"help": "BGE-M3: train dense, sparse and ColBERT together."})
    use_self_distill: bool = field(default=False, metadata={"help": "BGE-M3: heads also learn the ensemble's scores."})
    self_distill_start_step: int = field(default=-1, metadata={"help": "Self-distillation from after this optimizer step."})
    fix_encoder: bool = field(default=False, metadata={"help": "BGE-M3: train only the sparse and ColBERT heads."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")
        if self.use_mrl and (not self.mrl_dims or any(d < 1 for d in self.mrl_dims)):
            raise ValueError(f"--use_mrl needs --mrl_dims with positive sizes, got {self.mrl_dims}")
        if (self.use_self_distill or self.fix_encoder) and not self.unified_finetuning:
            raise ValueError("--use_self_distill and --fix_encoder need --unified_finetuning (BGE-M3 heads)")
        if self.use_mrl and self.unified_finetuning:
            raise ValueError("--use_mrl cannot be combined with --unified_finetuning (as in FlagEmbedding)")


def parse_dataclass_args(types: tuple, argv: list[str] | None, prog: str) -> tuple:
    """Parse options into instances of the dataclasses ``types`` (each option also as ``--kebab-case``).

    Raises:
        ValueError: an unknown option (named) or a bad value.
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(types, prog=prog, allow_abbrev=False)
    *parsed, rest = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False, return_remaining_strings=True)
    if rest:
        options = [r for r in rest if r.startswith("-")] or rest
        raise ValueError(f"unknown option(s) {', '.join(options)} (all given: {' '.join(rest)}); "
                         f"see `{prog} --help` for the accepted options")
    return tuple(parsed)


def parse_embedder_args(argv: list[str] | None = None):
    """Parse command-line style arguments into (model, data, training) argument dataclasses.

    Raises:
        ValueError: an unknown option (named) or a bad value.

    Example:
        >>> m, d, t = parse_embedder_args(["--model", "all-MiniLM-L6-v2", "--train_data", "x.jsonl",
        ...                                "--output-dir", "out", "--learning-rate", "2e-5"])
        >>> m.model_name_or_path, d.train_data, t.learning_rate
        ('all-MiniLM-L6-v2', ['x.jsonl'], 2e-05)
    """
    return parse_dataclass_args((EmbedderModelArguments, EmbedderDataArguments, EmbedderTrainingArguments), argv,
                                "bgekit train embedder")
