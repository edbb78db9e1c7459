"""FlagEmbedding's evaluation flow on bgekit's loaders, retrieval and metrics.

For each dataset and split: dense retrieval of ``search_top_k`` documents (corpus embeddings saved to and reused
from ``corpus_embd_save_dir/<model>/<dataset>/doc.npy``), then optional reranking of ``rerank_top_k``. Files
land where FlagEmbedding puts them::

    <output_dir>/<model>/NoReranker/<dataset>-<split>.json      search results with eval_name, model, split ...
    <output_dir>/<model>/NoReranker/EVAL/eval_results.json      metrics of every results file in that folder
    <output_dir>/<model>/<reranker>/...                         the same after reranking
    <eval_output_path>                                          markdown (or json) summary of all of output_dir

Existing search results are reused unless ``--overwrite True`` (their recorded names and split are checked).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from bgekit.errors import positive_int, UsageError
from bgekit.evaluation.metrics import check_metric_names, qa_metrics, retrieval_metrics, write_json, write_summary
from bgekit.evaluation.models import load_models, model_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """One benchmark family: where its data comes from and its per-dataset instructions."""

    hub: str | None                        # bgekit.eval.hub family; None: local folders only
    instructions: dict | None = None       # dataset -> query instruction (--use_special_instructions)
    shared_corpus: bool = False            # one corpus for every dataset (MKQA): embeddings saved once


def _families() -> dict[str, Family]:
    from bgekit.evaluation import instructions

    return {"beir": Family("beir", instructions.BEIR), "msmarco": Family("msmarco"), "miracl": Family("miracl"),
            "mldr": Family("mldr"), "mkqa": Family("mkqa", shared_corpus=True),
            "bright": Family("bright", instructions.BRIGHT_SHORT), "custom": Family(None)}


def _dense(x: Any) -> np.ndarray:
    if isinstance(x, dict):  # BGE-M3's FlagEmbedding-style output
        x = x["dense_vecs"]
    return np.asarray(x, dtype=np.float32)


def _has_split(folder: str, split: str) -> bool:
    names = (f"{split}_qrels.jsonl", f"{split}_answers.jsonl", os.path.join("qrels", f"{split}.tsv"),
             os.path.join("qrels", f"{split}.tsv.gz"))
    return any(os.path.isfile(os.path.join(folder, n)) for n in names)


class EvalRunner:
    """Run one family's evaluation from FlagEmbedding-style (eval_args, model_args); ``run()`` does it all.

    Args:
        eval_args, model_args: the parsed argument dataclasses (:mod:`bgekit.evaluation.arguments`).
        models: optional (embedder, reranker) already loaded (tests, notebooks); else loaded from model_args.
        family: "beir", "msmarco", "miracl", "mldr", "mkqa", "bright" or "custom" (default: the class's FAMILY).

    Example:
        >>> from bgekit.evaluation.beir import BEIREvalArgs, BEIREvalModelArgs, BEIREvalRunner   # doctest: +SKIP
        >>> BEIREvalRunner(BEIREvalArgs(dataset_dir="data", dataset_names=["scifact"]),
        ...                BEIREvalModelArgs(embedder_name_or_path="BAAI/bge-base-en-v1.5")).run()  # doctest: +SKIP
    """

    FAMILY = "custom"
    NEEDS_DATASET_DIR = True   # a family without hub data reads --dataset_dir

    def __init__(self, eval_args: Any, model_args: Any, models: tuple | None = None, family: str | None = None):
        family = family or self.FAMILY
        families = _families()
        if family not in families:
            raise ValueError(f"unknown evaluation family {family!r}; valid: {', '.join(families)}")
        self.family, self.spec, self.args, self.model_args = family, families[family], eval_args, model_args
        self._check_args()
        self.embedder, self.reranker = models if models is not None else load_models(model_args)
        self.retriever_name = model_name(model_args.embedder_name_or_path)
        self.reranker_name = model_name(model_args.reranker_name_or_path) if self.reranker is not None else None
        self._data: dict[tuple, Any] = {}
        self._corpus: dict[Any, np.ndarray] = {}
        self._scratch: Any = None  # a temporary folder for corpus vectors when none is saved

    # ------------------------------------------------------------------ arguments
    def _check_args(self) -> None:
        a = self.args
        a.eval_name = a.eval_name or self.family
        a.splits = [a.splits] if isinstance(a.splits, str) else list(a.splits)
        a.k_values = [a.k_values] if isinstance(a.k_values, int) else list(a.k_values)
        for name in ("search_top_k", "rerank_top_k"):
            positive_int(getattr(a, name), f"--{name}")
        check_metric_names(a.eval_metrics, a.k_values)
        if self.spec.hub is None and self.NEEDS_DATASET_DIR and not a.dataset_dir:
            raise ValueError(f"--dataset_dir is required for {self.family} evaluation (a folder with corpus.jsonl, "
                             "<split>_queries.jsonl and <split>_qrels.jsonl, or one such folder per --dataset_names)")
        if getattr(a, "task_type", "short") != "short":
            raise ValueError("--task_type long: bgekit reads BRIGHT's short documents only (the long-document "
                             "corpora are not in its loader); use --task_type short")
        if getattr(a, "use_special_instructions", False) and self.spec.instructions is None:
            raise ValueError(f"--use_special_instructions: bgekit has no per-dataset instructions for {self.family}")
        if a.token and os.environ.get("HF_TOKEN") != a.token:
            os.environ["HF_TOKEN"] = a.token  # read by huggingface_hub for every download

    def dataset_names(self) -> list[str | None]:
        """The datasets to run: the given names (checked), or every dataset of the family."""
        from bgekit.eval.hub import FAMILIES

        given = self.args.dataset_names
        if self.spec.hub is None:
            return list(given) if given else [None]
        known = FAMILIES[self.spec.hub][1] + (("cqadupstack",) if self.family == "beir" else ())
        if not given:
            return list(known)
        bad = [n for n in given if n not in known and not os.path.isdir(os.path.join(self.args.dataset_dir or "", n))]
        if bad:
            raise ValueError(f"--dataset_names {' '.join(bad)}: not in {self.family}; available: {', '.join(known)}")
        if self.spec.instructions is not None and getattr(self.args, "use_special_instructions", False):
            missing = [n for n in given if n not in self.spec.instructions]
            if missing:
                raise ValueError(f"--use_special_instructions: no instruction for {', '.join(missing)}")
        return list(given)

    def units(self, name: str | None) -> list[str | None]:
        """What one dataset name stands for: itself, or BEIR cqadupstack's forums ("cqadupstack/<forum>")."""
        if not (self.family == "beir" and name == "cqadupstack"):
            return [name]
        folder = os.path.join(self.args.dataset_dir or "", name)
        forums = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f, "corpus.jsonl"))) \
            if os.path.isdir(folder) else []
        if not forums:
            raise FileNotFoundError(f"cqadupstack: bgekit reads its forums from --dataset_dir/cqadupstack/<forum>/ "
                                    f"(corpus.jsonl, <split>_queries.jsonl, <split>_qrels.jsonl); none in {folder!r}")
        return [f"{name}/{forum}" for forum in forums]

    # ------------------------------------------------------------------ data
    def load(self, name: str | None, split: str):
        """One split of one dataset (cached), or None when that split does not exist (warned, as FlagEmbedding)."""
        key = (name, split)
        if key not in self._data:
            self._data[key] = self._read(name, split)
        return self._data[key]

    def _read(self, name: str | None, split: str):
        from bgekit.eval import hub

        a = self.args
        folder = os.path.join(a.dataset_dir, name) if a.dataset_dir and name else a.dataset_dir
        if folder and os.path.isdir(folder) and not (a.force_redownload and self.spec.hub):
            if not _has_split(folder, split):
                logger.warning("split %r not found in %s: skipped", split, folder)
                return None
            return hub._load_saved(folder, split, name or os.path.basename(os.path.normpath(folder)))
        if self.spec.hub is None:
            raise FileNotFoundError(f"--dataset_dir: {folder!r} is not a folder")
        if split not in hub.FAMILIES[self.spec.hub][2]:
            logger.warning("split %r is not a %s split (%s): skipped", split, self.family, ", ".join(hub.FAMILIES[self.spec.hub][2]))
            return None
        cache = os.path.join(a.cache_path, a.eval_name) if a.cache_path else None
        if a.force_redownload:
            data = hub.download(self.spec.hub, name, split, cache)
            if folder:
                hub.save_custom(data, folder)
            return data
        return hub.load_benchmark(self.spec.hub, name, split, a.dataset_dir, cache)

    # ------------------------------------------------------------------ stages
    def _embedding_dir(self, name: str | None) -> str | None:
        root = self.args.corpus_embd_save_dir
        if root is None:
            return None
        parts = [root, self.retriever_name] + ([name] if name and not self.spec.shared_corpus else [])
        return os.path.join(*parts)

    def _corpus_embeddings(self, name: str | None, data) -> np.ndarray:
        key = None if self.spec.shared_corpus else name
        if key in self._corpus:
            return self._corpus[key]
        folder = self._embedding_dir(name)
        path = os.path.join(folder, "doc.npy") if folder else None
        if path and os.path.isfile(path) and not self.args.overwrite:
            emb = np.load(path)
            if emb.shape[0] != len(data.doc_ids):
                raise UsageError(f"{path} holds {emb.shape[0]} embeddings but the corpus of {name or data.name} has "
                                 f"{len(data.doc_ids)} documents; pass --overwrite True to encode it again")
        else:
            emb = self._encode_corpus(data, path)
        self._corpus[key] = emb
        return emb

    def _encode_corpus(self, data, path: str | None) -> np.ndarray:
        """Encode the corpus a chunk at a time into ``path`` (or a temporary file), written whole or not at all;
        returns it memory-mapped (the texts are read from their file as they go: see bgekit.eval.stream)."""
        import tempfile

        from bgekit.eval.stream import EVAL_CHUNK
        from bgekit.index.dense import as_matrix
        from bgekit.index.arrays import NpyAppender

        if path is None:
            if self._scratch is None:
                self._scratch = tempfile.TemporaryDirectory(prefix="bgekit-eval-")
            path = os.path.join(self._scratch.name, f"corpus-{len(self._corpus)}.npy")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        part = f"{path}.part-{os.getpid()}"
        out = None
        try:
            for docs in data.document_chunks(EVAL_CHUNK):
                emb = as_matrix(_dense(self.embedder.encode_corpus(docs)), "corpus embeddings")
                out = out or NpyAppender(part, np.float32, (emb.shape[1],))
                out.append(emb)
            out.close()
            os.replace(part, path)
        finally:
            if out is not None and os.path.exists(part):
                out.file.close()
                os.remove(part)
        return np.load(path, mmap_mode="r")

    def retrieve(self, name: str | None, data) -> dict[str, dict[str, float]]:
        """Dense top-``search_top_k`` for every query of ``data``: ``{qid: {docid: score}}``."""
        from bgekit.eval.retrieval import Encoded, build_indexes, search, to_run

        corpus = self._corpus_embeddings(name, data)
        qids = list(data.queries)
        queries = _dense(self.embedder.encode_queries([data.queries[q] for q in qids]))
        k = min(self.args.search_top_k, len(data.doc_ids))
        scores, ids = search("dense", build_indexes("dense", Encoded(corpus)), Encoded(queries), k)
        drop = {q: ({q} if self.args.ignore_identical_ids else set()) | set(data.excluded.get(q, ())) for q in qids}
        return to_run(scores, ids, data.doc_ids, qids, k, drop)

    def rerank(self, data, run: dict) -> dict[str, dict[str, float]]:
        from bgekit.eval.retrieval import rerank

        return rerank(run, data.queries, data.texts_of, self.reranker, top_k=self.args.rerank_top_k)

    # ------------------------------------------------------------------ files
    def _info(self, reranker: str, split: str, name: str | None) -> dict:
        """The fields of a search-results file (a cqadupstack forum adds ``sub_dataset_name``, as FlagEmbedding)."""
        dataset, _, sub = (name or "").partition("/")
        info = {"eval_name": self.args.eval_name, "model_name": self.retriever_name, "reranker_name": reranker,
                "split": split, "dataset_name": dataset or None}
        return {**info, "sub_dataset_name": sub} if sub else info

    def _save(self, path: str, reranker: str, run: dict, split: str, name: str | None) -> None:
        write_json(path, {**self._info(reranker, split, name), "search_results": run})

    def _load_saved(self, path: str, reranker: str, split: str, name: str | None) -> dict:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        expected = self._info(reranker, split, name)
        wrong = {k: (info.get(k), v) for k, v in expected.items() if info.get(k) != v}
        if wrong:
            raise UsageError(f"{path} was written for another run ({', '.join(f'{k}: {a!r} vs {b!r}' for k, (a, b) in wrong.items())}); "
                             "pass --overwrite True or another --output_dir")
        return info["search_results"]

    def evaluate_folder(self, folder: str) -> dict[str, dict[str, float]]:
        """Metrics of every search-results file in ``folder``, keyed ``<dataset>-<split>`` (or ``<split>``); the
        cqadupstack forums are averaged into one entry, as FlagEmbedding does."""
        out, forums = {}, {}
        for file in sorted(os.listdir(folder)):
            if not file.endswith(".json"):
                continue
            with open(os.path.join(folder, file), encoding="utf-8") as f:
                info = json.load(f)
            if info.get("eval_name") != self.args.eval_name:
                raise ValueError(f"{os.path.join(folder, file)}: eval_name {info.get('eval_name')!r} is not {self.args.eval_name!r}")
            name, split, sub = info.get("dataset_name"), info["split"], info.get("sub_dataset_name")
            data = self.load(f"{name}/{sub}" if sub else name, split)
            if data is None:
                raise FileNotFoundError(f"{os.path.join(folder, file)}: split {split!r} of {name} is no longer available")
            run = info["search_results"]
            if data.answers is not None:
                metrics = qa_metrics(data.texts_of(d for res in run.values() for d in res), data.answers, run,
                                     self.args.k_values)
            else:
                metrics = retrieval_metrics(data.qrels, run, self.args.k_values)
            key = f"{name}-{split}" if name is not None else split
            if sub:
                forums.setdefault(key, []).append(metrics)
            else:
                out[key] = metrics
        for key, runs in forums.items():
            out[key] = {m: sum(r[m] for r in runs) / len(runs) for m in runs[0]}
        return out

    # ------------------------------------------------------------------ run
    def _stage(self, name: str | None, splits: list, reranker: str, compute) -> dict:
        """Search results of one stage for every split: reused from disk or computed, saved, then scored."""
        folder = os.path.join(self.args.output_dir, self.retriever_name, reranker)
        prefix = f"{name.replace('/', '-')}-" if name is not None else ""
        paths = {s: os.path.join(folder, f"{prefix}{s}.json") for s in splits}
        runs, fresh = {}, False
        for split, path in paths.items():
            if os.path.isfile(path) and not self.args.overwrite:
                runs[split] = self._load_saved(path, reranker, split, name)
            else:
                runs[split] = compute(split)
                self._save(path, reranker, runs[split], split, name)
                fresh = True
        eval_path = os.path.join(folder, "EVAL", "eval_results.json")
        if fresh or self.args.overwrite or not os.path.isfile(eval_path):
            write_json(eval_path, self.evaluate_folder(folder))
        return runs

    def evaluate_dataset(self, name: str | None) -> None:
        """Both stages for one dataset (each cqadupstack forum in turn)."""
        for unit in self.units(name):
            self._evaluate_unit(unit)

    def _evaluate_unit(self, name: str | None) -> None:
        splits = [s for s in self.args.splits if self.load(name, s) is not None]
        if not splits:
            logger.warning("%s %s: none of the splits %s exists; skipped", self.family, name, self.args.splits)
            return
        first = self._stage(name, splits, "NoReranker", lambda s: self.retrieve(name, self.load(name, s)))
        if self.reranker is not None:
            self._stage(name, splits, self.reranker_name, lambda s: self.rerank(self.load(name, s), first[s]))

    def run(self) -> dict:
        """Evaluate every dataset, then write the summary; returns ``{model: {reranker: {key: metrics}}}``."""
        names = self.dataset_names()
        for name in names:
            if getattr(self.args, "use_special_instructions", False):
                self.embedder.query_instruction_for_retrieval = self.spec.instructions[name]
            logger.info("%s evaluation on %s", self.args.eval_name, name or self.args.dataset_dir)
            self.evaluate_dataset(name)
        return write_summary(self.args.output_dir, self.args.eval_output_method, self.args.eval_output_path,
                             self.args.eval_metrics)


def _runner(family: str, doc: str) -> type:
    return type(f"{family}Runner", (EvalRunner,), {"FAMILY": family, "__doc__": doc})


BEIREvalRunner = _runner("beir", "BEIR evaluation (FlagEmbedding's BEIREvalRunner).")
MSMARCOEvalRunner = _runner("msmarco", "MS MARCO evaluation (FlagEmbedding's MSMARCOEvalRunner).")
MIRACLEvalRunner = _runner("miracl", "MIRACL evaluation (FlagEmbedding's MIRACLEvalRunner).")
MLDREvalRunner = _runner("mldr", "MLDR evaluation (FlagEmbedding's MLDREvalRunner).")
MKQAEvalRunner = _runner("mkqa", "MKQA evaluation, judged by answers (FlagEmbedding's MKQAEvalRunner).")
BrightEvalRunner = _runner("bright", "BRIGHT evaluation (FlagEmbedding's BrightEvalRunner).")
CustomEvalRunner = _runner("custom", "Evaluation on local folders (FlagEmbedding's CustomEvalRunner).")
