"""`bgekit train KIND ...`: fine-tune a model on FlagEmbedding-format jsonl data.

Every option after KIND goes to that trainer's own parser (FlagEmbedding's ``--snake_case`` names, each also
spelled ``--kebab-case``, plus every Hugging Face ``TrainingArguments`` option); ``bgekit train embedder
--help`` lists them. Under several processes: ``torchrun --nproc_per_node N -m bgekit train embedder ...``.

Example::

    bgekit train embedder --model all-MiniLM-L6-v2 --train-data train.jsonl --output-dir out/ \\
        --num-train-epochs 1 --per-device-train-batch-size 32 --learning-rate 2e-5
"""
from __future__ import annotations

import argparse
import importlib
import logging

# kind -> (help, "module:function"); the function takes the option list and returns an exit code.
TRAINERS = {
    "embedder": ("fine-tune an embedder (encoder, BGE-M3, decoder-only with LoRA, ICL)", "bgekit.cli.train:run_embedder"),
    "reranker": ("fine-tune a reranker (cross-encoder, LLM with LoRA, layerwise)", "bgekit.cli.train:run_reranker"),
}


def _train(argv: list[str], parse, train, describe) -> int:
    """Parse the options, train, save into --output_dir, print what was saved where."""
    from bgekit.cli.checks import check_extras

    # before anything loads: the Trainer needs accelerate, LoRA needs peft (named with their extra, not a traceback)
    check_extras("accelerate", *(["peft"] if any(a.replace("-", "_").startswith("__use_lora") for a in argv) else []))
    model_args, data_args, training_args = parse(argv)
    if training_args.should_log:
        logging.getLogger("bgekit").setLevel(logging.INFO)
    model = train(model_args, data_args, training_args)
    if training_args.process_index == 0:
        print(f"saved the trained {describe(model)} to {training_args.output_dir}")
    return 0


def run_embedder(argv: list[str]) -> int:
    from bgekit.train.args import parse_embedder_args
    from bgekit.train.run import train_embedder

    return _train(argv, parse_embedder_args, train_embedder, lambda emb: f"{emb.spec.kind} embedder")


def run_reranker(argv: list[str]) -> int:
    from bgekit.train.reranker_args import parse_reranker_args
    from bgekit.train.run_reranker import train_reranker

    return _train(argv, parse_reranker_args, train_reranker, lambda model: f"{model.kind} reranker")


def _run(args: argparse.Namespace) -> int:
    module, _, function = TRAINERS[args.train_kind][1].partition(":")
    return getattr(importlib.import_module(module), function)(list(args.train_argv))


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="fine-tune an embedder or reranker on jsonl training data",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="train_kind", metavar="KIND", required=True)
    for kind, (help_text, _) in TRAINERS.items():
        # prefix_chars="+": this parser claims no option, so every --option reaches the trainer's own parser.
        sub = kinds.add_parser(kind, help=help_text, add_help=False, prefix_chars="+")
        sub.add_argument("train_argv", nargs=argparse.REMAINDER, help="options; see `bgekit train %s --help`" % kind)
        sub.set_defaults(func=_run)
