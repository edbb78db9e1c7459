"""FlagEmbedding's Python names at the fine-tuning module paths: argument classes and runners.

``from bgekit.finetune.embedder.encoder_only.base import EncoderOnlyEmbedderModelArguments, ...,
EncoderOnlyEmbedderRunner`` works as with FlagEmbedding: the argument classes are bgekit's training dataclasses
with that module's defaults (its model class, pooling, templates, LoRA ...), and ``Runner(model_args, data_args,
training_args).run()`` trains and saves. The reference's model and trainer classes (``BiEncoderOnlyEmbedderModel``,
``...Trainer``) are internals of its runners and are not provided.

Example:
    >>> from bgekit.finetune.embedder.encoder_only.base import (EncoderOnlyEmbedderModelArguments,
    ...     EncoderOnlyEmbedderDataArguments, EncoderOnlyEmbedderTrainingArguments, EncoderOnlyEmbedderRunner)
    >>> EncoderOnlyEmbedderModelArguments(model_name_or_path="BAAI/bge-base-en-v1.5").model_class
    'encoder-only-base'
"""
from __future__ import annotations

import dataclasses


def with_defaults(base: type, defaults: dict, name: str) -> type:
    """A dataclass subclass of ``base`` whose fields named in ``defaults`` default to those values."""
    mine = {f.name: f for f in dataclasses.fields(base)}
    overrides = [(key, mine[key].type, dataclasses.field(default=value, metadata=mine[key].metadata))
                 for key, value in defaults.items() if key in mine]
    return dataclasses.make_dataclass(name, overrides, bases=(base,))


def argument_classes(module: str, names: tuple[str, str, str]) -> tuple[type, type, type]:
    """(model, data, training) argument classes of a module path, named as FlagEmbedding names them."""
    from bgekit.finetune.cli import MODULES

    kind, defaults = MODULES[module]
    if kind == "embedder":
        from bgekit.train.args import EmbedderDataArguments, EmbedderModelArguments, EmbedderTrainingArguments

        bases = (EmbedderModelArguments, EmbedderDataArguments, EmbedderTrainingArguments)
    else:
        from bgekit.train.reranker_args import RerankerDataArguments, RerankerModelArguments, RerankerTrainingArguments

        bases = (RerankerModelArguments, RerankerDataArguments, RerankerTrainingArguments)
    typed = {k: v.replace("\\n", "\n") if isinstance(v, str) else v for k, v in defaults.items()}
    classes = tuple(with_defaults(b, typed, n) for b, n in zip(bases, names))
    for cls in classes:  # importable where FlagEmbedding users import it (and where pickle looks for it)
        cls.__module__ = f"bgekit.finetune.{module}"
    return classes


def runner_class(module: str, name: str) -> type:
    """FlagEmbedding's ``<...>Runner(model_args, data_args, training_args)`` with ``run()``."""

    def __init__(self, model_args, data_args, training_args):
        self.model_args, self.data_args, self.training_args = model_args, data_args, training_args

    def run(self):
        """Train, save into ``training_args.output_dir``; returns the trained model (in memory)."""
        from bgekit.finetune.cli import run_parsed

        return run_parsed(module, self.model_args, self.data_args, self.training_args)

    return type(name, (), {"__init__": __init__, "run": run, "__doc__": f"Runs ``bgekit.finetune.{module}``.",
                           "__module__": f"bgekit.finetune.{module}"})
