"""LM-Cocktail on real data: merge a SciFact fine-tuned all-MiniLM-L6-v2 with its base model and show what the
merge keeps, on SciFact (test nDCG@10, the target task) and STS-B validation (cosine Spearman, general ability).

Rows: the base model, the fine-tuned model, merges ``w * fine-tuned + (1 - w) * base`` for each --weights value,
and one merge whose weights LM-Cocktail computes from --examples SciFact *train* examples
(``softmax(-loss / 5)`` over the two models). Test queries are used for scoring only.

    # a fine-tuned folder from examples/finetune_scifact.sh (OUT/embedder), its mined training data beside it:
    python examples/cocktail_scifact.py --finetuned OUT/embedder --train-data OUT/train_mined.jsonl --out merges/

Every merged folder, and every row's scores (results-*.json), is kept in --out, so a second run only computes what
is missing. The last lines printed are a markdown table and one JSON object.

Measured on finetune_scifact.sh's full fine-tune (2 epochs, 52 steps; its embedder training exactly, CPU,
2026-11-30; 37 min for training and this script):

| model | SciFact nDCG@10 | SciFact R@100 | STS-B Spearman | weights (fine-tuned, base) |
|---|---|---|---|---|
| base | 0.6444 | 0.9217 | 0.8672 | |
| fine-tuned | 0.7031 | 0.9533 | 0.8673 | |
| merge w=0.30 | 0.6631 | 0.9467 | 0.8674 | 0.300, 0.700 |
| merge w=0.50 | 0.6795 | 0.9500 | 0.8675 | 0.500, 0.500 |
| merge w=0.70 | 0.6913 | 0.9500 | 0.8675 | 0.700, 0.300 |
| merge from 8 examples | 0.6804 | 0.9500 | 0.8675 | 0.531, 0.469 (losses 0.239, 0.862) |

This full fine-tune did not cost STS-B (0.8672 -> 0.8673), so there was no general ability to win back: the
merges keep 32% (w=0.3) to 80% (w=0.7) of the SciFact gain, and their STS-B is within 0.0003 of both models.

Measured earlier (CPU, 2 cores shared with other jobs, 2026-11-30) on a short fine-tune, not
finetune_scifact.sh's full run: its data and mining steps, then `bgekit train embedder` with --max-steps 20
(0.77 epoch), --learning-rate 5e-5, --passage-max-len 128 and the script's other settings. Then
`python examples/cocktail_scifact.py --finetuned OUT/embedder --train-data OUT/train_mined.jsonl --out OUT/merges
--weights 0.3,0.5,0.7 --examples 8` (full SciFact test corpus, 5,183 documents; bf16 at 256 tokens as in
finetune_scifact.sh; STS-B in fp32):

| model | SciFact nDCG@10 | SciFact R@100 | STS-B Spearman | weights (fine-tuned, base) |
|---|---|---|---|---|
| base | 0.6444 | 0.9217 | 0.8672 | |
| fine-tuned | 0.6731 | 0.9483 | 0.8663 | |
| merge w=0.30 | 0.6613 | 0.9400 | 0.8671 | 0.300, 0.700 |
| merge w=0.50 | 0.6672 | 0.9433 | 0.8669 | 0.500, 0.500 |
| merge w=0.70 | 0.6703 | 0.9433 | 0.8666 | 0.700, 0.300 |
| merge from 8 examples | 0.6677 | 0.9433 | 0.8668 | 0.524, 0.476 (losses 0.389, 0.862) |

The short fine-tune cost STS-B little (-0.0009), so the merges can only show a small recovery: w=0.7 keeps 90% of
the SciFact gain (w=0.5: 79%, from examples: 81%) with STS-B between the fine-tuned and the base model; no merge
is above the base's 0.8672 (w=0.3: 0.8671, keeping 59% of the gain). With --corpus-sample 500 (783 documents) the
same models rank the same way (nDCG@10 0.8172 base, 0.8413 fine-tuned, 0.8378 at w=0.7).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--finetuned", required=True, help="the fine-tuned model folder")
    p.add_argument("--base", default="all-MiniLM-L6-v2", help="the base model (default: all-MiniLM-L6-v2)")
    p.add_argument("--train-data", required=True, help="SciFact train jsonl with mined negatives (query, pos, neg)")
    p.add_argument("--out", required=True, help="folder for the merged models and results.json")
    p.add_argument("--weights", default="0.3,0.4,0.5,0.6,0.7", help="weights of the fine-tuned model to sweep")
    p.add_argument("--examples", type=int, default=8, help="train examples for the computed weights (default 8)")
    p.add_argument("--scifact", default=os.path.join(SHARED, "scifact"), help="SciFact BEIR folder")
    p.add_argument("--sts", default=os.path.join(SHARED, "stsbenchmark-dev", "dev.jsonl"), help="STS-B dev jsonl")
    p.add_argument("--dtype", default="bf16", help="SciFact encoding dtype (default bf16, as finetune_scifact.sh)")
    p.add_argument("--sts-dtype", default="fp32", help="STS-B encoding dtype (default fp32)")
    p.add_argument("--max-length", type=int, default=256, help="SciFact tokens per query and passage (default 256)")
    p.add_argument("--corpus-sample", type=int, default=0,
                   help="score SciFact test against a smaller corpus: every test-relevant document plus this many "
                        "others (seeded); 0 (default) = the full 5,183-document corpus. For a quick CPU run only: "
                        "the scores are then not comparable to published SciFact numbers")
    return p.parse_args()


def few_examples(path: str, n: int, neg_number: int = 7) -> list[dict]:
    """The first ``n`` training examples with at least ``neg_number`` mined negatives (first positive kept)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            if item.get("pos") and len(item.get("neg", [])) >= neg_number:
                out.append({"query": item["query"], "pos": item["pos"][:1], "neg": item["neg"]})
            if len(out) == n:
                break
    return out


def corpus_subset(src: str, out: str, n_others: int, seed: int = 0) -> str:
    """A BEIR folder with SciFact's queries and test qrels and a corpus of every test-relevant document plus
    ``n_others`` other documents drawn with ``seed``; returns its path."""
    folder = os.path.join(out, f"scifact-test-relevant-plus-{n_others}")
    if os.path.isfile(os.path.join(folder, "corpus.jsonl")):
        return folder
    with open(os.path.join(src, "qrels", "test.tsv"), encoding="utf-8") as f:
        relevant = {line.split("\t")[1] for line in list(f)[1:] if line.strip()}
    with open(os.path.join(src, "corpus.jsonl"), encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    others = [i for i, line in enumerate(lines) if json.loads(line)["_id"] not in relevant]
    keep = set(random.Random(seed).sample(others, min(n_others, len(others))))
    os.makedirs(os.path.join(folder, "qrels"), exist_ok=True)
    for name in ("queries.jsonl", os.path.join("qrels", "test.tsv")):
        if not os.path.lexists(os.path.join(folder, name)):
            os.symlink(os.path.abspath(os.path.join(src, name)), os.path.join(folder, name))
    with open(os.path.join(folder, "corpus.jsonl.tmp"), "w", encoding="utf-8") as f:
        f.writelines(line for i, line in enumerate(lines) if i in keep or json.loads(line)["_id"] in relevant)
    os.replace(os.path.join(folder, "corpus.jsonl.tmp"), os.path.join(folder, "corpus.jsonl"))
    return folder


def merges(args: argparse.Namespace) -> dict[str, tuple[str, dict]]:
    """label -> (model folder or name, notes); merged folders are made when missing."""
    from bgekit.cocktail import mix_models, mix_models_with_data

    rows = {"base": (args.base, {}), "fine-tuned": (args.finetuned, {})}
    for w in (float(x) for x in args.weights.split(",")):
        folder = os.path.join(args.out, f"merged-w{w:.2f}")
        if not os.path.isfile(os.path.join(folder, "bgekit_spec.json")):
            mix_models([args.finetuned, args.base], "encoder", [w, round(1 - w, 6)], output_path=folder)
        rows[f"merge w={w:.2f}"] = (folder, {"weights": [w, round(1 - w, 6)]})
    folder = os.path.join(args.out, "merged-from-examples")
    info_path = os.path.join(folder, "cocktail_weights.json")
    if not os.path.isfile(info_path):
        random.seed(0)
        model = mix_models_with_data([args.finetuned, args.base], "encoder", example_data=few_examples(
            args.train_data, args.examples), output_path=folder)
        with open(info_path, "w", encoding="utf-8") as f:
            json.dump({"weights": model.cocktail_weights, "losses": model.cocktail_losses,
                       "examples": args.examples}, f)
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    rows[f"merge from {info['examples']} examples"] = (folder, info)
    return rows


def scores(args: argparse.Namespace, model: str, dataset: str) -> dict:
    from bgekit.eval.runner import EvalConfig, evaluate_beir
    from bgekit.eval.sts import evaluate_sts, read_sts
    from bgekit.loading import load_embedder

    start = time.time()
    config = EvalConfig(k_values=(10, 100), show_progress=False)
    report = evaluate_beir([dataset], model=model, splits=["test"], config=config,
                           model_kwargs={"dtype": args.dtype, "query_max_length": args.max_length,
                                         "passage_max_length": args.max_length})
    metrics = next(iter(report["datasets"].values()))["splits"]["test"]["metrics"]
    sts = evaluate_sts(load_embedder(model, dtype=args.sts_dtype), read_sts(args.sts), show_progress=False)
    return {"scifact_ndcg@10": metrics["ndcg@10"], "scifact_recall@100": metrics["recall@100"],
            "stsb_spearman": sts["cosine_spearman"], "seconds": round(time.time() - start, 1)}


def main() -> None:
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    dataset = corpus_subset(args.scifact, args.out, args.corpus_sample) if args.corpus_sample else args.scifact
    results_path = os.path.join(args.out, f"results-{'sample%d' % args.corpus_sample if args.corpus_sample else 'full'}.json")
    results = json.load(open(results_path, encoding="utf-8")) if os.path.isfile(results_path) else {}
    rows = merges(args)
    for label, (model, info) in rows.items():
        if label not in results:
            results[label] = {**scores(args, model, dataset), **info, "model": model}
            with open(results_path + ".tmp", "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2)
            os.replace(results_path + ".tmp", results_path)
        r = results[label]
        print(f"{label}: SciFact nDCG@10 {r['scifact_ndcg@10']:.4f}, STS-B Spearman {r['stsb_spearman']:.4f}", flush=True)
    corpus = sum(1 for line in open(os.path.join(dataset, "corpus.jsonl"), encoding="utf-8") if line.strip())
    print(f"\nSciFact test, {corpus} documents in the corpus; STS-B validation, 1,500 pairs")
    print("\n| model | SciFact nDCG@10 | SciFact R@100 | STS-B Spearman | weights (fine-tuned, base) |")
    print("|---|---|---|---|---|")
    for label, r in ((label, results[label]) for label in rows):
        weights = ", ".join(f"{w:.3f}" for w in r["weights"]) if "weights" in r else ""
        print(f"| {label} | {r['scifact_ndcg@10']:.4f} | {r['scifact_recall@100']:.4f} | {r['stsb_spearman']:.4f} | {weights} |")
    print(json.dumps({k: {m: v for m, v in results[k].items() if m != "model"} for k in rows}))


if __name__ == "__main__":
    main()
