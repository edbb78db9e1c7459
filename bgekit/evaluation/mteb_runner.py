"""``python -m bgekit.evaluation.mteb``: MTEB tasks through the ``mteb`` package (2.x) with bgekit's adapter.

Tasks come from ``mteb.get_tasks(tasks=..., languages=..., task_types=...)``. Each task's result is written as
``<output_dir>/<model>/no_model_name_available/no_revision_available/<Task>.json`` (FlagEmbedding's place) and
the summary, ``{task type: {task: main score x100, "Avg"}, "Avg"}`` with CQADupstack tasks averaged into one,
to ``eval_output_path`` as JSON. As in FlagEmbedding, embeddings are not normalised for Classification tasks
and are for every other type. MTEB downloads its task data from the hub: offline, only local or cached tasks run.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

from bgekit.evaluation.metrics import write_json
from bgekit.evaluation.models import load_models, model_name

logger = logging.getLogger(__name__)
RESULTS_SUBDIR = os.path.join("no_model_name_available", "no_revision_available")


class MTEBEvalRunner:
    """FlagEmbedding's ``MTEBEvalRunner`` on ``bgekit.eval.mteb.MTEBModel`` (``run()`` does it all).

    Args:
        eval_args, model_args: :class:`~bgekit.evaluation.arguments.MTEBEvalArgs` and the model arguments.
        models: optional (embedder, reranker) already loaded.
    """

    def __init__(self, eval_args: Any, model_args: Any, models: tuple | None = None):
        self.args, self.model_args = eval_args, model_args
        self._check_args()
        self.embedder, _ = models if models is not None else load_models(model_args)
        self.name = model_name(model_args.embedder_name_or_path)

    def _check_args(self) -> None:
        a = self.args
        if self.model_args.reranker_name_or_path is not None:
            raise ValueError("--reranker_name_or_path: MTEB scores the embedder alone (FlagEmbedding loads the "
                             "reranker for MTEB and never uses it); leave it out")
        if a.use_special_instructions:
            raise ValueError("--use_special_instructions: bgekit has no table of MTEB task instructions; pass one "
                             "instruction with --query_instruction_for_retrieval")
        if a.examples_path is not None:
            raise ValueError("--examples_path: FlagEmbedding reads these example files but never gives them to the "
                             "model; pass ICL examples with --examples_for_task instead")
        if a.eval_output_method != "markdown" or a.dataset_dir or a.dataset_names:
            logger.info("MTEB writes its summary as JSON to --eval_output_path; --eval_output_method, "
                        "--dataset_dir and --dataset_names are not MTEB options")

    def tasks(self) -> list:
        import mteb

        a = self.args
        if not (a.tasks or a.languages or a.task_types):
            raise ValueError("name the MTEB tasks to run: --tasks, --languages and/or --task_types")
        return list(mteb.get_tasks(tasks=a.tasks, languages=a.languages, task_types=a.task_types))

    def run(self) -> dict:
        """Evaluate every task, write each task's JSON and the summary; returns the summary."""
        import mteb

        from bgekit.eval.mteb import MTEBModel

        folder = os.path.join(self.args.output_dir, self.name, RESULTS_SUBDIR)
        scores: dict[str, dict[str, float]] = {}
        for task in self.tasks():
            meta = task.metadata
            path = os.path.join(folder, f"{meta.name}.json")
            if os.path.isfile(path) and not self.args.overwrite:
                with open(path, encoding="utf-8") as f:
                    result = json.load(f)
            else:
                self.embedder.normalize_embeddings = meta.type != "Classification"
                model = MTEBModel(self.embedder, name=f"bgekit/{self.name}")
                out = mteb.evaluate(model, [task], cache=None, co2_tracker=False, show_progress_bar=False)
                result = json.loads(out.task_results[0].model_dump_json())
                write_json(path, result)
            scores.setdefault(meta.type, {})[meta.name] = main_score(result)
        summary = summarise(scores)
        write_json(self.args.eval_output_path, summary)
        return summary


def main_score(result: dict) -> float:
    """The task's main score x100 (2 decimals): the first of test / dev / validation, subset "default" if any."""
    split = next((s for s in ("test", "dev", "validation") if s in result["scores"]), None) or next(iter(result["scores"]))
    entries = result["scores"][split]
    entry = next((e for e in entries if e.get("hf_subset") == "default"), entries[0])
    return round(entry["main_score"] * 100, 2)


def summarise(scores: dict[str, dict[str, float]]) -> dict:
    """Per type: each task, CQADupstack* tasks as one averaged entry, and "Avg"; then the overall "Avg"."""
    out: dict[str, Any] = {}
    overall = []
    for task_type, by_task in scores.items():
        plain = {t: v for t, v in by_task.items() if "CQADupstack" not in t}
        cqa = [v for t, v in by_task.items() if "CQADupstack" in t]
        if cqa:
            plain["CQADupstack"] = round(sum(cqa) / len(cqa), 2)
        out[task_type] = dict(plain, Avg=round(sum(plain.values()) / len(plain), 2))
        overall += list(plain.values())
    out["Avg"] = round(sum(overall) / len(overall), 2) if overall else None
    return out
