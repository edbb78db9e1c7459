"""``torchrun -m bgekit.finetune.<path>`` / ``python -m ...``: FlagEmbedding's fine-tuning module paths.

Each module path fixes what FlagEmbedding's module fixes (the model class, and that module's argument
defaults) and runs bgekit's trainer (:mod:`bgekit.train`) with every other option as given. Options
FlagEmbedding defines are all accepted; those that cannot apply here stop the run with the reason.
"""
from __future__ import annotations

import logging
import sys

# module path -> (trainer, defaults FlagEmbedding's module gives, as options placed before the user's)
_TEMPLATES = {"query_instruction_format": "{}{}", "passage_instruction_format": "{}{}"}
MODULES = {
    "embedder.encoder_only.base": ("embedder", {"model_class": "encoder-only-base", "sentence_pooling_method": "cls", **_TEMPLATES}),
    "embedder.encoder_only.m3": ("embedder", {"model_class": "encoder-only-m3", "sentence_pooling_method": "cls", **_TEMPLATES}),
    "embedder.decoder_only.base": ("embedder", {"model_class": "decoder-only-base", "use_lora": True, **_TEMPLATES}),
    "embedder.decoder_only.icl": ("embedder", {"model_class": "decoder-only-icl", "use_lora": True, **_TEMPLATES,
                                               "icl_suffix_str": "\nResponse:"}),
    "reranker.encoder_only.base": ("reranker", {"model_class": "encoder-only-base"}),
    "reranker.decoder_only.base": ("reranker", {"model_class": "decoder-only-base", "use_lora": True}),
    "reranker.decoder_only.layerwise": ("reranker", {"model_class": "decoder-only-layerwise", "use_lora": True,
                                                     "model_type": "from_raw_model"}),
}


def _given(argv: list[str], name: str) -> bool:
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    return any(a in spellings or a.split("=", 1)[0] in spellings for a in argv)


def build_argv(module: str, argv: list[str]) -> list[str]:
    """The module's defaults followed by the user's options (argparse keeps the last value given)."""
    if module not in MODULES:
        raise ValueError(f"unknown fine-tuning module {module!r}; valid: {', '.join(MODULES)}")
    _, defaults = MODULES[module]
    if _given(argv, "model_class"):
        raise ValueError(f"--model_class: bgekit.finetune.{module} trains {defaults['model_class']} models; use "
                         "`bgekit train embedder|reranker --model_class ...` to choose another class")
    return [x for key, value in defaults.items() for x in (f"--{key}", str(value))] + list(argv)


def parse(module: str, argv: list[str]) -> tuple:
    """(model_args, data_args, training_args) for ``module`` from a FlagEmbedding-style option list."""
    kind = MODULES[module][0] if module in MODULES else None
    full = build_argv(module, argv)
    if kind == "embedder":
        from bgekit.train.args import parse_embedder_args

        return parse_embedder_args(full)
    from bgekit.train.reranker_args import parse_reranker_args

    return parse_reranker_args(full)


def train(module: str, argv: list[str]):
    """Parse and train; returns the trained model (in memory)."""
    return run_parsed(module, *parse(module, argv))


def run_parsed(module: str, model_args, data_args, training_args):
    """Train from parsed arguments (what the module's Runner class does); returns the trained model."""
    if training_args.should_log:
        logging.getLogger("bgekit").setLevel(logging.INFO)
    if MODULES[module][0] == "embedder":
        from bgekit.train.run import train_embedder

        model = train_embedder(model_args, data_args, training_args)
    else:
        from bgekit.train.run_reranker import train_reranker

        model = train_reranker(model_args, data_args, training_args)
    if training_args.process_index == 0:
        import os

        merged = getattr(model_args, "only_merge_lora_model", False)
        where = os.path.join(training_args.output_dir, "merged_model") if merged else training_args.output_dir
        print(f"saved the {'merged' if merged else 'trained'} model to {where}")
    return model


def main(module: str, argv: list[str] | None = None) -> int:
    """Run ``bgekit.finetune.<module> ARGS``; returns the exit code (one line per error, as ``bgekit``)."""
    from bgekit.cli.errors import debug_requested, report

    try:
        train(module, sys.argv[1:] if argv is None else list(argv))
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        return report(e, "train", debug_requested())
    return 0
