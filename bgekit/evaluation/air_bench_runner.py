"""``python -m bgekit.evaluation.air_bench``: AIR-Bench dev sets on bgekit's retrieval, FlagEmbedding's options.

Which datasets exist for each task type / domain / language comes from the ``air_benchmark`` package's task
table (``pip install --no-deps air-benchmark``: its ``pytrec-eval`` requirement does not build here, and
bgekit only reads the table); the data itself comes through :mod:`bgekit.eval.hub` (family "air-bench").
Search results land where AIR-Bench writes them::

    <output_dir>/<model>/<reranker or NoReranker>/<task_type>/<domain>/<language>_<dataset>_<split>.json

plus ``.../EVAL/eval_results.json`` per stage (metrics keyed ``<task_type>_<domain>_<language>_<dataset>-<split>``).
Only the dev split can be scored: AIR-Bench keeps its test judgements private (results are submitted to its
leaderboard), so ``--splits test`` is refused with that reason.
"""
from __future__ import annotations

import logging
import os
from typing import Any

from bgekit.errors import UsageError
from bgekit.evaluation.metrics import retrieval_metrics, write_json
from bgekit.evaluation.runner import EvalRunner

logger = logging.getLogger(__name__)


def task_table(version: str) -> dict:
    """AIR-Bench's ``{task_type: {domain: {language: {dataset: {"splits": [...]}}}}}`` for ``version``."""
    try:
        from air_benchmark.tasks.tasks import BenchmarkTable
    except ImportError as e:
        raise ImportError("AIR-Bench's dataset table comes from the air_benchmark package: "
                          "pip install --no-deps air-benchmark") from e
    if version not in BenchmarkTable:
        raise ValueError(f"--benchmark_version {version!r}; available: {', '.join(sorted(BenchmarkTable))}")
    return {t: {d: {lang: dict(sets) for lang, sets in langs.items()} for d, langs in domains.items()}
            for t, domains in BenchmarkTable[version].items()}


class AIRBenchEvalRunner(EvalRunner):
    """FlagEmbedding's ``AIRBenchEvalRunner``: every dataset of the chosen task types, domains and languages."""

    FAMILY = "custom"
    NEEDS_DATASET_DIR = False

    def __init__(self, eval_args: Any, model_args: Any, models: tuple | None = None):
        self.air = eval_args
        self.table = task_table(eval_args.benchmark_version)
        splits = eval_args.splits or ["dev"]
        if "test" in splits:
            raise ValueError("--splits test: AIR-Bench keeps its test judgements private (test results are submitted "
                             "to its leaderboard), so bgekit scores the dev split only; use --splits dev")
        if eval_args.bm25_tmp_dir != "./bm25_tmp_dir" or not eval_args.remove_bm25_tmp_dir:
            raise ValueError("--bm25_tmp_dir / --remove_bm25_tmp_dir belong to AIR-Bench's BM25 baseline, not to a "
                             "dense model's evaluation")
        from bgekit.evaluation.arguments import AbsEvalArgs

        generic = AbsEvalArgs(eval_name="air_bench", splits=splits, output_dir=eval_args.output_dir,
                              search_top_k=eval_args.search_top_k, rerank_top_k=eval_args.rerank_top_k,
                              cache_path=eval_args.cache_dir, overwrite=eval_args.overwrite)
        super().__init__(generic, model_args, models, family="custom")

    def _pick(self, given: list | None, available: set, option: str) -> list[str]:
        if not given:
            return sorted(available)
        bad = [g for g in given if g not in available]
        if bad:
            raise ValueError(f"--{option} {' '.join(bad)}: not in {self.air.benchmark_version}; available: {', '.join(sorted(available))}")
        return list(given)

    def datasets(self) -> list[tuple[str, str, str, str, list[str]]]:
        """(task_type, domain, language, dataset, splits) to run, in AIR-Bench's order."""
        types = self._pick(self.air.task_types, set(self.table), "task_types")
        domains = self._pick(self.air.domains, {d for t in self.table.values() for d in t}, "domains")
        langs = self._pick(self.air.languages, {lang for t in self.table.values() for d in t.values() for lang in d}, "languages")
        out = []
        for t in types:
            for d in domains:
                for lang in langs:
                    for name, info in self.table.get(t, {}).get(d, {}).get(lang, {}).items():
                        splits = [s for s in self.args.splits if s in info.get("splits", [])]
                        if splits:
                            out.append((t, d, lang, name, splits))
        if not out:
            raise ValueError("no AIR-Bench dataset matches these --task_types / --domains / --languages / --splits")
        return out

    def _read(self, name: str | None, split: str):
        from bgekit.eval import hub

        return hub.load_benchmark("air-bench", name, split, None, self.air.cache_dir)

    def _load_air(self, path: str, stage: str, split: str) -> dict:
        import json

        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        expected = {"model_name": self.retriever_name, "reranker_name": stage, "split": split,
                    "benchmark_version": self.air.benchmark_version}
        wrong = [k for k, v in expected.items() if info.get(k) != v]
        if wrong:
            raise UsageError(f"{path} was written for another run ({', '.join(wrong)} differ); pass --overwrite True")
        return info["search_results"]

    def run(self) -> dict:
        """Retrieve (and rerank) every chosen dataset's splits, write results and metrics; returns the metrics."""
        results: dict[str, dict] = {}
        for task_type, domain, lang, dataset, splits in self.datasets():
            hub_name = f"{task_type}_{domain}_{lang}/{dataset}"
            stages = [("NoReranker", None)] + ([(self.reranker_name, True)] if self.reranker is not None else [])
            first: dict[str, dict] = {}
            for stage, rerank in stages:
                folder = os.path.join(self.air.output_dir, self.retriever_name, stage)
                for split in splits:
                    data = self.load(hub_name, split)
                    path = os.path.join(folder, task_type, domain, f"{lang}_{dataset}_{split}.json")
                    if os.path.isfile(path) and not self.air.overwrite:
                        run = self._load_air(path, stage, split)
                    else:
                        run = self.rerank(data, first[split]) if rerank else self.retrieve(hub_name, data)
                    first.setdefault(split, run)
                    write_json(path, {"model_name": self.retriever_name, "reranker_name": stage,
                                      "benchmark_version": self.air.benchmark_version, "task_type": task_type,
                                      "domain": domain, "language": lang, "dataset_name": dataset, "split": split,
                                      "search_results": run})
                    key = f"{task_type}_{domain}_{lang}_{dataset}-{split}"
                    results.setdefault(stage, {})[key] = retrieval_metrics(data.qrels, run, [1, 3, 5, 10, 100, 1000])
                write_json(os.path.join(folder, "EVAL", "eval_results.json"), results[stage])
        return results
