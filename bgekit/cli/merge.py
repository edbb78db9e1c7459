"""`bgekit merge`: LM-Cocktail model merging (a weighted average of models of one architecture).

    bgekit merge --models BASE FT1 FT2 --weights 0.5 0.3 0.2 --output merged/
    bgekit merge --models all-MiniLM-L6-v2 out/embedder --example-data few.jsonl --output merged/

With --example-data the weights are ``softmax(-loss / temperature)`` of each model's loss on the examples
(embedders: {"query", "pos": [...], "neg": [...]} lines; LLMs: {"input", "output"} lines).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from bgekit.cli.checks import check_input, check_output_dir, positive_int, refuse
from bgekit.errors import UsageError

DATA_OPTIONS = {"--temperature": 5.0, "--batch-size": 2, "--max-input-length": 2048, "--neg-number": 7, "--seed": 0}


def model_type_of(name: str) -> str:
    """LM-Cocktail's model_type for a model: "reranker" for a *ForSequenceClassification checkpoint, "decoder"
    for a *ForCausalLM one (LLMs, LLM rerankers), else "encoder" (embedders, decoder embedders without a head)."""
    from bgekit import backends

    archs = backends.read_config(backends.locate(name)).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "reranker"
    if any(a.endswith("ForCausalLM") for a in archs):
        return "decoder"
    return "encoder"


def read_examples(path: str, model_type: str, neg_number: int) -> list[dict]:
    """The examples of a jsonl file, checked item by item (errors name the file and line)."""
    from bgekit.cocktail.losses import check_examples
    from bgekit.errors import InputError
    from bgekit.io import iter_jsonl

    rows = list(iter_jsonl(check_input(path, "--example-data")))
    if not rows:
        raise InputError(f"--example-data {path!r} holds no examples")
    lines = [n for n, _ in rows]
    return check_examples([obj for _, obj in rows], model_type, neg_number, where=lambda i: f"{path}:{lines[i]}")


def _precheck(args: argparse.Namespace) -> None:
    if len(args.models) < 2:
        raise UsageError(f"--models needs at least two models to merge, got {len(args.models)}")
    if (args.weights is None) == (args.example_data is None):
        raise UsageError("give either --weights (one per model) or --example-data FILE.jsonl (weights from examples)")
    if args.weights is not None:
        refuse(args, DATA_OPTIONS, "with --weights (they set how weights are computed from --example-data)")
        if len(args.weights) != len(args.models):
            raise UsageError(f"--weights: {len(args.weights)} weights for {len(args.models)} models; give one per model")
        if abs(sum(args.weights) - 1) > 1e-3:
            raise UsageError(f"--weights sum to {sum(args.weights):g}; they must sum to 1 (e.g. "
                             f"{' '.join(f'{w / sum(args.weights):.3g}' for w in args.weights)})" if sum(args.weights) > 0
                             else f"--weights sum to {sum(args.weights):g}; they must sum to 1")
    elif not args.temperature or args.temperature <= 0:
        raise UsageError(f"--temperature must be a positive number, got {args.temperature}")
    check_output_dir(args.output, "--output")
    if os.path.isdir(args.output) and os.listdir(args.output) and not args.overwrite:
        raise UsageError(f"--output {args.output!r} is a folder with files in it; give a new folder or --overwrite")


def cmd_merge(args: argparse.Namespace) -> int:
    import random

    from bgekit import cocktail

    _precheck(args)
    model_type = args.model_type or model_type_of(args.models[0])
    if args.weights is not None:
        merge = cocktail.mix_models_by_layers if args.by_layers else cocktail.mix_models
        merge(args.models, model_type, args.weights, output_path=args.output)
        weights, losses = list(args.weights), None
    else:
        if model_type == "reranker":
            raise UsageError("--example-data computes weights for embedders (encoder) and LLMs (decoder) only, as "
                             "LM-Cocktail does; give --weights to merge rerankers")
        examples = read_examples(args.example_data, model_type, args.neg_number)
        random.seed(args.seed)  # the negatives sampled per query (LM-Cocktail leaves Python's random unseeded)
        model = cocktail.mix_models_with_data(args.models, model_type, example_data=examples,
                                              temperature=args.temperature, batch_size=args.batch_size,
                                              max_input_length=args.max_input_length, neg_number=args.neg_number,
                                              output_path=args.output)
        weights, losses = model.cocktail_weights, model.cocktail_losses
    _print(args, model_type, weights, losses)
    return 0


def _print(args: argparse.Namespace, model_type: str, weights: list[float], losses: list[float] | None) -> None:
    if args.json:
        print(json.dumps({"model_type": model_type, "models": args.models, "weights": weights, "losses": losses,
                          "output": args.output}, indent=2))
        return
    width = max(len(m) for m in args.models)
    print(f"{'model':<{width}}  {'weight':>8}" + ("  example loss" if losses else ""))
    for i, name in enumerate(args.models):
        print(f"{name:<{width}}  {weights[i]:8.4f}" + (f"  {losses[i]:12.4f}" if losses else ""))
    print(f"merged {len(args.models)} {model_type} models -> {args.output}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge models of one architecture (LM-Cocktail): given weights or from examples",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, help="model names or folders; the first gives config and tokenizer")
    p.add_argument("--weights", nargs="+", type=float, help="one weight per model, summing to 1")
    p.add_argument("--example-data", help="jsonl examples of the target task: weights from each model's loss on them")
    p.add_argument("--output", "-o", required=True, help="folder for the merged model")
    p.add_argument("--model-type", choices=["encoder", "decoder", "reranker"],
                   help="LM-Cocktail's model type (default: from the first model's config.json architectures)")
    p.add_argument("--by-layers", action="store_true", help="LM-Cocktail's mix_models_by_layers (the same streaming merge)")
    p.add_argument("--temperature", type=float, default=5.0, help="softmax temperature for --example-data (default 5.0)")
    p.add_argument("--batch-size", type=positive_int, default=2, help="examples per batch for the loss (default 2)")
    p.add_argument("--max-input-length", type=positive_int, default=2048, help="tokens per text (default 2048; at most "
                                                                                   "the model's position limit)")
    p.add_argument("--neg-number", type=int, default=7, help="negatives sampled per query, embedders (default 7)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling the negatives (default 0)")
    p.add_argument("--overwrite", action="store_true", help="write into an --output folder that already has files")
    p.add_argument("--json", action="store_true", help="print the weights as JSON")
    p.set_defaults(func=cmd_merge)
