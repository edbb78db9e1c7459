"""Hand-picked mutations of bgekit's maths, each run against the tests that should catch it.

Each mutation replaces one exact line fragment in a copy of the source tree (the working tree is never touched),
then runs the named tests with that copy first on ``sys.path``. A mutation is *caught* when the tests fail, and
*survives* when they pass: a surviving mutation is a gap in the suite. The result table is in docs/testing.md.

Usage:
    python benchmarks/mutation_check.py               # every mutation (about 3-6 minutes on 2 cores)
    python benchmarks/mutation_check.py --only in_batch kd_dropped
    python benchmarks/mutation_check.py --json results.json
    python benchmarks/mutation_check.py --only save_base_not_trained --tests tests/test_train_cli.py  # other tests
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]


OBJ = "tests/test_train_objectives.py"
TRAIN_VALUES, EVAL_VALUES = "tests/test_train_values.py", "tests/test_eval_values.py"
MUTATIONS = [
    # training objectives
    Mutation("in_batch", "bgekit/train/embedder.py", "in_batch = not no_in_batch_neg", "in_batch = False", (OBJ,)),
    Mutation("embedder_kd_dropped", "bgekit/train/embedder.py",
             "teacher = None if teacher_scores is None else", "teacher = None if True else", (OBJ,)),
    Mutation("kd_dropped", "bgekit/train/reranker.py",
             "teacher = None if teacher_scores is None else", "teacher = None if True else", (OBJ,)),
    Mutation("temperature_ignored", "bgekit/train/losses.py", "return q @ p.T / temperature", "return q @ p.T", (OBJ,)),
    Mutation("m3_sparse_weight", "bgekit/train/embedder.py", "M3_SPARSE_WEIGHT = 0.3", "M3_SPARSE_WEIGHT = 1.0", (OBJ,)),
    Mutation("m3_unified_weights", "bgekit/train/losses.py", "return (dense + ensemble + 0.1 * sparse + colbert) / 4",
             "return (dense + ensemble + sparse + colbert) / 4", (OBJ,)),
    Mutation("self_distill_dropped", "bgekit/train/losses.py", "return (unified + distill) / 2", "return unified", (OBJ,)),
    Mutation("kl_div_sign", "bgekit/train/losses.py",
             "return -(teacher_probs * torch.log_softmax(student.float(), dim=-1)).sum(dim=-1).mean()",
             "return (teacher_probs * torch.log_softmax(student.float(), dim=-1)).sum(dim=-1).mean()", (OBJ,)),
    Mutation("m3_kd_no_mask", "bgekit/train/losses.py", "scores = scores.scatter(1, target[:, None], lowest)",
             "pass", (OBJ,)),
    Mutation("layerwise_self_distill_dropped", "bgekit/train/reranker.py",
             "if teacher is None and self.self_distill and len(grouped) > 1:", "if False:", (OBJ,)),
    Mutation("mrl_not_renormalised", "bgekit/train/losses.py",
             "out.append(F.normalize(part, dim=-1) if normalize else part)", "out.append(part)", (OBJ,)),
    # pooling and scoring (inference), caught by the golden parity cases
    Mutation("mean_pool_ignores_mask", "bgekit/pooling.py",
             "return (hidden * m).sum(dim=1) / mask.sum(dim=1, keepdim=True).to(hidden.dtype)",
             "return hidden.mean(dim=1)", ("tests/test_parity.py",)),
    Mutation("cls_pool_second_token", "bgekit/pooling.py", "return hidden[:, 0]", "return hidden[:, 1]",
             ("tests/test_parity.py",)),
    # metrics
    Mutation("sts_dot_not_cosine", "bgekit/eval/metrics.py",
             "cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)",
             "cos = (a * b).sum(1)", ("tests/test_eval_metrics_exact.py",)),
    Mutation("has_answer_off_by_one", "bgekit/eval/metrics.py", "for i in range(len(toks) - len(a) + 1)",
             "for i in range(len(toks) - len(a))", ("tests/test_eval_metrics_exact.py",)),
    Mutation("sts_pearson_is_spearman", "bgekit/eval/metrics.py", '"cosine_pearson": float(pearsonr(cos, gold)[0])',
             '"cosine_pearson": float(spearmanr(cos, gold)[0])', ("tests/test_eval_metrics_exact.py",)),
    Mutation("mkqa_ranking_reversed", "bgekit/eval/runner.py", "[texts[d] for d in ranked(res)] for q, res in run.items()",
             "[texts[d] for d in ranked(res)[::-1]] for q, res in run.items()", (EVAL_VALUES + "::test_mkqa_benchmark_reports_the_qa_recall_of_its_ranking",)),
    Mutation("hub_ids_not_strings", "bgekit/eval/hub.py", "lambda r: [(str(r[q]), str(r[d]), int(r[s]))]",
             "lambda r: [(r[q], r[d], int(r[s]))]", (EVAL_VALUES + "::test_beir_hub_rows_give_the_local_beir_folder",)),
    # saved folders, teacher labels, batch splits, ICL (training plumbing around the objectives)
    Mutation("save_base_not_trained", "bgekit/train/run.py",
             "    trainer.train(resume_from_checkpoint=resume)\n    trainer.save_model()\n",
             "    trainer.save_model()\n    trainer.train(resume_from_checkpoint=resume)\n",
             (TRAIN_VALUES + "::test_cli_saved_embedder_is_the_trained_model", TRAIN_VALUES + "::test_cli_saved_reranker_is_the_trained_model")),
    Mutation("label_offsets", "bgekit/train/label.py", "start += n_pos + n_neg", "start += n_pos",
             ("tests/test_train_label.py", TRAIN_VALUES + "::test_label_normalize_writes_the_sigmoid_of_the_rerankers_scores")),
    Mutation("rank_split_overlaps", "bgekit/train/sampler.py", "return [chunk[a:b] for a, b in zip(bounds, bounds[1:])]",
             "return [chunk[:b - a] for a, b in zip(bounds, bounds[1:])]", (TRAIN_VALUES + "::test_mixed_batches_split_across_ranks_without_overlap_and_cover_the_epoch",)),
    Mutation("icl_no_examples", "bgekit/train/collate.py",
             "chosen = rng.sample(others, min(rng.randint(0, MAX_ICL_EXAMPLES), len(others)))", "chosen = []",
             (TRAIN_VALUES + "::test_icl_loss_is_the_contrastive_loss_of_the_in_context_queries",)),
]


def apply(tree: str, m: Mutation) -> None:
    path = os.path.join(tree, m.path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutation {m.name!r}: {m.old!r} occurs {text.count(m.old)} times in {m.path} (expected once); "
                         "update the mutation list")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(m.old, m.new))


def run(m: Mutation, timeout: int, tests: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"mut-{m.name}-") as tree:
        for part in ("bgekit", "tests"):
            shutil.copytree(os.path.join(ROOT, part), os.path.join(tree, part),
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(os.path.join(ROOT, "pyproject.toml"), tree)
        apply(tree, m)
        golden = os.environ.get("BGEKIT_GOLDEN", os.path.join(os.path.dirname(ROOT), "shared", "golden"))
        env = dict(os.environ, BGEKIT_GOLDEN=golden, PYTHONPATH=tree + os.pathsep + os.environ.get("PYTHONPATH", ""))
        start = time.perf_counter()
        tests = list(tests or m.tests)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-rf", "-p", "no:cacheprovider", *tests],
                              cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines() or [""]
        failed = next((ln.split()[1] for ln in lines if ln.startswith("FAILED ")), None)
        return {"mutation": m.name, "file": m.path, "tests": tests, "caught": proc.returncode != 0,
                "caught_by": failed, "seconds": round(time.perf_counter() - start, 1), "pytest": lines[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="mutation names (default: all)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutation")
    parser.add_argument("--tests", nargs="+", help="run these tests instead of each mutation's own (e.g. the older "
                        "tests, to see whether they alone would catch it)")
    args = parser.parse_args(argv)
    names = {m.name for m in MUTATIONS}
    if args.only and set(args.only) - names:
        parser.error(f"unknown mutation(s) {sorted(set(args.only) - names)}; valid: {', '.join(sorted(names))}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    results = []
    for m in chosen:
        r = run(m, args.timeout, args.tests)
        results.append(r)
        print(f"{'caught  ' if r['caught'] else 'SURVIVED'} {r['mutation']:32s} {r['file']:28s} {r['seconds']:6.1f}s  {r['caught_by'] or r['pytest']}",
              flush=True)
    caught = sum(r["caught"] for r in results)
    print(f"{caught} of {len(results)} mutations caught")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
