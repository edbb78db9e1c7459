"""Training data for the SciFact proof, from the train split only (test queries are never read).

Writes, into OUT:
  train.jsonl   {"query": claim, "pos": [relevant abstracts]}, one line per train query (negatives come from
                `bgekit mine`); documents are title + " " + text, as the evaluation encodes them;
  corpus.jsonl  {"text": document} for every corpus document: the candidate pool for mining.
With --dev-queries N, N train queries (chosen with --seed) are held out instead: they go to a BEIR-layout
folder OUT/dev (qrels/dev.tsv, with the corpus and queries linked), for choosing settings without test data.

    python examples/scifact_data.py ../shared/data/scifact OUT [--dev-queries 150]
"""
from __future__ import annotations

import argparse
import json
import os
import random

from bgekit.eval.data import load_folder
from bgekit.io import atomic_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir")
    parser.add_argument("out")
    parser.add_argument("--dev-queries", type=int, default=0, help="hold out this many train queries as a dev split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_folder(args.dataset_dir, split="train")
    text = dict(zip(data.doc_ids, data.documents()))
    qids = list(data.queries)
    dev = set(random.Random(args.seed).sample(qids, args.dev_queries)) if args.dev_queries else set()
    os.makedirs(args.out, exist_ok=True)
    with atomic_open(os.path.join(args.out, "train.jsonl")) as f:
        for q in qids:
            pos = [text[d] for d, rel in data.qrels[q].items() if rel > 0 and d in text]
            if q not in dev and pos:
                f.write(json.dumps({"query": data.queries[q], "pos": pos}, ensure_ascii=False) + "\n")
    with atomic_open(os.path.join(args.out, "corpus.jsonl")) as f:
        for doc in data.documents():
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    if dev:
        folder = os.path.join(args.out, "dev")
        os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
        for name in ("corpus.jsonl", "queries.jsonl"):
            link = os.path.join(folder, name)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(args.dataset_dir, name)), link)
        with atomic_open(os.path.join(folder, "qrels", "dev.tsv")) as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in qids:
                if q in dev:
                    f.writelines(f"{q}\t{d}\t{rel}\n" for d, rel in data.qrels[q].items())
    print(f"{len(qids) - len(dev)} training queries, {len(dev)} held out, {len(text)} documents -> {args.out}")


if __name__ == "__main__":
    main()
