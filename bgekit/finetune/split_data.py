"""Split BGE-M3 training data by length: ``python -m bgekit.finetune.split_data`` (FlagEmbedding's
``split_data_by_length.py``, same options).

Each example's length is the token count of its longest text (query, positives, negatives) under the model's
tokenizer; an example goes to ``<output_dir>/<file stem>_len-<lo>-<hi>.jsonl`` for the range ``lo <= length <
hi`` of ``--length_list`` (the last range is open: ``_len-7000-inf``). Empty ranges write no file; existing
files are kept unless ``--overwrite``. One JSON line per input file is appended to ``<output_dir>/<log_name>``
(size, average length, examples per range). Same-length batches then come from ``--same_dataset_within_batch``
training on the output folder.

Example::

    python -m bgekit.finetune.split_data --input_path train_data --output_dir train_data_split \\
        --model_name_or_path BAAI/bge-m3 --length_list 0 500 1000 2000
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Sequence
from bgekit.errors import InputError

DEFAULT_LENGTHS = (0, 500, 1000, 2000, 3000, 4000, 5000, 6000, 7000)


def length_ranges(length_list: Sequence[int]) -> list[tuple[int, float]]:
    """``[0, 500, 1000]`` -> ``[(0, 500), (500, 1000), (1000, inf)]``; the bounds must be distinct and >= 0."""
    bounds = sorted(int(x) for x in length_list)
    if not bounds or bounds[0] < 0 or len(set(bounds)) != len(bounds):
        raise ValueError(f"--length_list must be distinct non-negative integers, got {list(length_list)}")
    return [(lo, bounds[i + 1] if i + 1 < len(bounds) else math.inf) for i, lo in enumerate(bounds)]


def _max_lengths(tokenizer, rows: list[dict]) -> list[int]:
    texts, owner = [], []
    for i, row in enumerate(rows):
        for text in [row["query"], *row.get("pos", []), *row.get("neg", [])]:
            texts.append(text)
            owner.append(i)
    out = [0] * len(rows)
    for i, ids in zip(owner, tokenizer(texts)["input_ids"]):
        out[i] = max(out[i], len(ids))
    return out


class SplitByLengthHandler:
    """FlagEmbedding's handler: ``SplitByLengthHandler(model, ...).run(input_path, output_dir, log_name)``.

    Args:
        model_name_or_path: whose tokenizer measures the lengths.
        cache_dir: hub cache folder for that tokenizer.
        num_proc: worker processes that tokenise (1: in this process).
        length_list: range bounds (see :func:`length_ranges`).
        overwrite: rewrite output files that exist.
    """

    def __init__(self, model_name_or_path: str = "BAAI/bge-m3", cache_dir: str | None = None, num_proc: int = 16,
                 length_list: Sequence[int] = DEFAULT_LENGTHS, overwrite: bool = False):
        from bgekit import backends

        if num_proc < 1:
            raise ValueError(f"--num_proc must be a positive integer, got {num_proc}")
        self.ranges = length_ranges(length_list)
        self.tokenizer = backends.load_tokenizer(backends.locate(model_name_or_path, cache_dir))
        self.num_proc, self.overwrite = num_proc, overwrite

    def lengths(self, rows: list[dict]) -> list[int]:
        """The longest text's token count per example (in ``num_proc`` processes for large files)."""
        if self.num_proc == 1 or len(rows) < 2000:
            return _max_lengths(self.tokenizer, rows)
        from concurrent.futures import ProcessPoolExecutor

        step = math.ceil(len(rows) / self.num_proc)
        chunks = [rows[i:i + step] for i in range(0, len(rows), step)]
        with ProcessPoolExecutor(self.num_proc) as pool:
            parts = pool.map(_max_lengths, [self.tokenizer] * len(chunks), chunks)
            return [n for part in parts for n in part]

    def process_file(self, file_path: str, output_stem: str) -> dict:
        """Split one jsonl file; returns its log record."""
        from bgekit.io import atomic_open, iter_jsonl

        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        rows = []
        for line, row in iter_jsonl(file_path):
            if not isinstance(row.get("query"), str) or not isinstance(row.get("pos", []), list):
                raise InputError(f"{file_path}:{line}: an example needs a 'query' string and a 'pos' list")
            rows.append(row)
        lengths = self.lengths(rows)
        counts = {}
        for lo, hi in self.ranges:
            label = f"len-{lo}-{hi}"
            path = f"{output_stem}_{label}.jsonl"
            if os.path.exists(path) and not self.overwrite:
                print(f"{path} exists, skipped (pass --overwrite to rewrite it)")
                continue
            chosen = [r for r, n in zip(rows, lengths) if lo <= n < hi]
            counts[label] = len(chosen)
            if chosen:
                with atomic_open(path) as f:
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
        return {"file_name": os.path.basename(file_path), "size": len(rows),
                "avg_length": sum(lengths) / len(rows) if rows else 0.0, "file_path": file_path, "start_time": start,
                "end_time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()), "split_info": counts}

    def run(self, input_path: str, output_dir: str, log_name: str | None = ".split_log") -> list[dict]:
        """Split a jsonl file, or every ``*.jsonl`` of a folder, into ``output_dir``; returns the log records."""
        if not os.path.exists(input_path):
            raise FileNotFoundError(f"--input_path {input_path!r} does not exist")
        os.makedirs(output_dir, exist_ok=True)
        files = ([os.path.join(input_path, f) for f in sorted(os.listdir(input_path)) if f.endswith(".jsonl")]
                 if os.path.isdir(input_path) else [input_path])
        records = [self.process_file(f, os.path.join(output_dir, os.path.splitext(os.path.basename(f))[0])) for f in files]
        with open(os.path.join(output_dir, log_name or ".split_log"), "a", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return records


def main(argv: list[str] | None = None) -> int:
    """``python -m bgekit.finetune.split_data``: FlagEmbedding's options; returns the exit code."""
    from bgekit.cli.errors import debug_requested, report

    p = argparse.ArgumentParser(prog="python -m bgekit.finetune.split_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_path", required=True, help="a jsonl file or a folder of them")
    p.add_argument("--output_dir", required=True, help="where the split files go")
    p.add_argument("--cache_dir", default=None, help="hub cache folder for the tokenizer")
    p.add_argument("--log_name", default=".split_log", help="log file in output_dir (appended)")
    p.add_argument("--length_list", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="range bounds")
    p.add_argument("--model_name_or_path", default="BAAI/bge-m3", help="whose tokenizer measures lengths")
    p.add_argument("--num_proc", type=int, default=16, help="tokenising processes")
    p.add_argument("--overwrite", action="store_true", help="rewrite existing output files")
    args = p.parse_args(argv)
    try:
        handler = SplitByLengthHandler(args.model_name_or_path, args.cache_dir, args.num_proc, args.length_list, args.overwrite)
        handler.run(args.input_path, args.output_dir, args.log_name)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001
        return report(e, None, debug_requested())
    print("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
