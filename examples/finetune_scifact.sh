#!/usr/bin/env bash
# Fine-tune all-MiniLM-L6-v2 and a MiniLM cross-encoder on SciFact's train split, on CPU, and evaluate on its test
# split with bgekit's evaluation. Test queries are never used for training or for choosing settings (the settings
# below were chosen on 150 held-out train queries: python examples/scifact_data.py DATA OUT --dev-queries 150).
# On those dev queries (first stage: plain all-MiniLM-L6-v2, nDCG@10 0.6541) the cross-encoder trained with
# learning rate 2e-4 for 2 epochs reranked the top 100 to 0.7023 (5e-5 for 1 epoch left its loss at chance), and
# mixing in the first-stage score (--rerank-interpolation) did best at 0.5 (0.7165; swept 0 to 0.7 by 0.1).
#
#   examples/finetune_scifact.sh OUT_DIR          (SCIFACT_DIR overrides the dataset folder)
#
# Steps: training data from qrels/train.tsv -> hard negatives mined with all-MiniLM-L6-v2 -> fine-tune the embedder
# -> evaluate it -> train a cross-encoder from the MiniLM weights on the same data -> rerank the fine-tuned
# embedder's top 100, by the cross-encoder alone and mixed with the first-stage score. The last line printed is one
# JSON object with the metrics and the wall time of the main steps.
set -euo pipefail

OUT=${1:?usage: examples/finetune_scifact.sh OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${SCIFACT_DIR:-$HERE/../../shared/data/scifact}
BGEKIT=${BGEKIT:-bgekit}
mkdir -p "$OUT"
declare -A SECONDS_OF

step() {  # step NAME command...: run, log to OUT/NAME.log, record the wall time
  local name=$1; shift
  local start=$(date +%s)
  echo "== $name: $*" >&2
  "$@" > "$OUT/$name.log" 2>&1 || { echo "step $name failed; see $OUT/$name.log" >&2; tail -20 "$OUT/$name.log" >&2; exit 1; }
  SECONDS_OF[$name]=$(( $(date +%s) - start ))
  echo "   $name took ${SECONDS_OF[$name]} s" >&2
}

COMMON_TRAIN=(--bf16 --use-cpu --save-strategy no --report-to none --logging-steps 5 --overwrite-output-dir
              --dataloader-num-workers 0 --seed 42)

step data python "$HERE/scifact_data.py" "$DATA" "$OUT"
step mine $BGEKIT mine --model all-MiniLM-L6-v2 --input "$OUT/train.jsonl" --output "$OUT/train_mined.jsonl" \
    --candidate-pool "$OUT/corpus.jsonl" --range-for-sampling 10-100 --negative-number 15 --use-bf16
step train_embedder $BGEKIT train embedder --model all-MiniLM-L6-v2 --train-data "$OUT/train_mined.jsonl" \
    --output-dir "$OUT/embedder" --num-train-epochs 2 --per-device-train-batch-size 32 --train-group-size 4 \
    --learning-rate 3e-5 --warmup-ratio 0.1 --temperature 0.05 --query-max-len 64 --passage-max-len 256 \
    --attn-implementation eager \
    "${COMMON_TRAIN[@]}"
EVAL=(--dataset-dir "$DATA" --split test --dtype bf16 --max-length 256 --no-progress --cache-dir "$OUT/cache")
step eval_baseline $BGEKIT eval beir --model all-MiniLM-L6-v2 "${EVAL[@]}" --output "$OUT/eval_baseline.json"
step eval_embedder $BGEKIT eval beir --model "$OUT/embedder" "${EVAL[@]}" --output "$OUT/eval_embedder.json"
step train_reranker $BGEKIT train reranker --model all-MiniLM-L6-v2 --train-data "$OUT/train_mined.jsonl" \
    --output-dir "$OUT/reranker" --per-device-train-batch-size 16 --train-group-size 4 \
    --learning-rate 2e-4 --num-train-epochs 2 --warmup-ratio 0.1 --query-max-len 64 --passage-max-len 192 "${COMMON_TRAIN[@]}"
step eval_rerank $BGEKIT eval beir --model "$OUT/embedder" --reranker "$OUT/reranker" --rerank-top-k 100 \
    --reranker-max-length 256 "${EVAL[@]}" --output "$OUT/eval_rerank.json"
step eval_rerank_mix $BGEKIT eval beir --model "$OUT/embedder" --reranker "$OUT/reranker" --rerank-top-k 100 \
    --reranker-max-length 256 --rerank-interpolation 0.5 "${EVAL[@]}" --output "$OUT/eval_rerank_mix.json"

python - "$OUT" "${SECONDS_OF[mine]}" "${SECONDS_OF[train_embedder]}" "${SECONDS_OF[train_reranker]}" \
    "${SECONDS_OF[eval_embedder]}" "${SECONDS_OF[eval_rerank]}" "${SECONDS_OF[eval_rerank_mix]}" <<'EOF'
import json, sys
out, *secs = sys.argv[1:]
def metrics(name):
    report = json.load(open(f"{out}/eval_{name}.json"))
    return next(iter(report["datasets"].values()))["splits"]["test"]["metrics"]
base, emb, rr, mix = metrics("baseline"), metrics("embedder"), metrics("rerank"), metrics("rerank_mix")
print(json.dumps({
    "baseline_ndcg@10": round(base["ndcg@10"], 4), "ndcg@10": round(emb["ndcg@10"], 4),
    "rerank_ndcg@10": round(rr["ndcg@10"], 4), "rerank_mix_ndcg@10": round(mix["ndcg@10"], 4),
    "recall@100": round(emb["recall@100"], 4),
    "seconds": dict(zip(["mine", "train_embedder", "train_reranker", "eval_embedder", "eval_rerank", "eval_rerank_mix"],
                        map(int, secs))),
}))
EOF
