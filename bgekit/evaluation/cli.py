"""The ``python -m bgekit.evaluation.<family>`` entry point: parse FlagEmbedding's arguments, run, report errors."""
from __future__ import annotations

import logging
import sys

# family -> (eval-args class, model-args class, runner class), as names in bgekit.evaluation.arguments / .runner
COMMANDS = {
    "beir": ("BEIREvalArgs", "BEIREvalModelArgs", "BEIREvalRunner"),
    "msmarco": ("MSMARCOEvalArgs", "MSMARCOEvalModelArgs", "MSMARCOEvalRunner"),
    "miracl": ("MIRACLEvalArgs", "MIRACLEvalModelArgs", "MIRACLEvalRunner"),
    "mldr": ("MLDREvalArgs", "MLDREvalModelArgs", "MLDREvalRunner"),
    "mkqa": ("MKQAEvalArgs", "MKQAEvalModelArgs", "MKQAEvalRunner"),
    "bright": ("BrightEvalArgs", "BrightEvalModelArgs", "BrightEvalRunner"),
    "custom": ("CustomEvalArgs", "CustomEvalModelArgs", "CustomEvalRunner"),
    "mteb": ("MTEBEvalArgs", "MTEBEvalModelArgs", "bgekit.evaluation.mteb_runner:MTEBEvalRunner"),
    "air_bench": ("AIRBenchEvalArgs", "AIRBenchEvalModelArgs", "bgekit.evaluation.air_bench_runner:AIRBenchEvalRunner"),
}


def _runner_class(name: str) -> type:
    import importlib

    module, _, attr = name.rpartition(":") if ":" in name else ("bgekit.evaluation.runner", "", name)
    return getattr(importlib.import_module(module), attr)


def parse(family: str, argv: list[str] | None = None) -> tuple:
    """(eval_args, model_args) from a FlagEmbedding-style option list; an unknown option is a ValueError naming it."""
    from bgekit.evaluation import arguments
    from bgekit.train.args import parse_dataclass_args

    if family not in COMMANDS:
        raise ValueError(f"unknown evaluation family {family!r}; valid: {', '.join(COMMANDS)}")
    eval_cls, model_cls, _ = COMMANDS[family]
    return parse_dataclass_args((getattr(arguments, eval_cls), getattr(arguments, model_cls)), argv,
                                f"python -m bgekit.evaluation.{family}")


def main(family: str, argv: list[str] | None = None) -> int:
    """Run ``python -m bgekit.evaluation.<family> ARGS``; returns the exit code (one line per error, as ``bgekit``)."""
    log = logging.getLogger("bgekit")
    from bgekit.cli.errors import StderrHandler, debug_requested, report

    if not log.handlers:
        log.addHandler(StderrHandler())
    log.setLevel(logging.INFO)

    try:
        eval_args, model_args = parse(family, sys.argv[1:] if argv is None else list(argv))
        _runner_class(COMMANDS[family][2])(eval_args, model_args).run()
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        return report(e, "eval", debug_requested())
    return 0
