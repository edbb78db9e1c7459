"""Visualized-BGE image encoding speed: images/s in fp32 and bf16, batched versus one image per call, one run.

Generated PNG images (random sizes around the tower's input, so decoding and resizing are part of the cost) are
encoded by ``bgekit.VisualEmbedder`` on two models: the golden tiny checkpoint (64 px, 2+2 layers, width 32) and,
unless ``--no-b16``, a randomly initialised model of the published base size (EVA02-CLIP-B-16 built from the
named config, 224 px, 196 patches, plus a 12-layer 768-wide BERT; weights are random, speed is not). Each row
prints images/s and its ratio to the peer, fp32 batched, timed right before it in each repeat (so load that
comes and goes hits both), plus the smallest cosine to the fp32 vectors. The preprocessing alone (Pillow +
numpy, no model) is printed as a ceiling. On a shared machine trust the ratios more than the images/s.

    python benchmarks/bench_visual.py [--images 64] [--b16-images 16] [--batch-size 32] [--repeats 2] [--threads N] [--no-b16]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "..", "shared", "golden", "models", "visual-bge")


def make_images(folder: str, n: int, side: int, seed: int = 0) -> list[str]:
    """``n`` PNGs with smooth gradients plus noise, sides 0.8-1.6x ``side`` (so every one is resized)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = (int(side * f) for f in rng.uniform(0.8, 1.6, 2))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=-1) * 255 * rng.uniform(0.3, 1.0, 3)
        pixels = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        paths.append(os.path.join(folder, f"img{i:04d}.png"))
        Image.fromarray(pixels).save(paths[-1])
    return paths


def random_b16(folder: str) -> tuple[str, str]:
    """A text folder named like bge-base-en-v1.5 (so the name picks EVA02-CLIP-B-16) and a random .pth."""
    import torch
    from transformers import BertConfig

    from bgekit.visual.config import NAMED_CONFIGS
    from bgekit.visual.model import VisualBGEModel

    text = os.path.join(folder, "random-bge-base-en-v1.5")
    os.makedirs(text)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(TINY, "bge-tiny", name), text)
    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    with open(os.path.join(text, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config.to_dict(), f)
    torch.manual_seed(0)
    weights = os.path.join(folder, "Visualized_random_b16.pth")
    state = VisualBGEModel(config, NAMED_CONFIGS["EVA02-CLIP-B-16"]).state_dict()
    torch.save({k: v.to(torch.bfloat16) for k, v in state.items()}, weights)  # half the bytes; loaded as fp32
    return text, weights


def timed(fn) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_model(label: str, text: str, weights: str, paths: list[str], batch_size: int, repeats: int) -> None:
    from bgekit import VisualEmbedder
    from bgekit.visual.images import load_pixels

    models = {d: VisualEmbedder(text, weights, dtype=d, batch_size=batch_size) for d in ("fp32", "bf16")}
    size = models["fp32"].image_size
    t_pre = min(timed(lambda: [load_pixels(p, size) for p in paths])[0] for _ in range(repeats))
    print(f"\n{label}: {len(paths)} images, {size} px, {models['fp32'].vision.num_patches} patches; "
          f"preprocessing alone {len(paths) / t_pre:.1f} images/s; peer = fp32 batched (batch size {batch_size})")
    print(f"{'dtype':>5} {'calls':>12} {'images/s':>9} {'vs peer':>8} {'min cos to fp32':>16}")
    models["fp32"].encode(images=paths[:2], show_progress=False)  # warm-up
    peer = lambda: models["fp32"].encode(images=paths, show_progress=False)
    ref = None
    for dtype in ("fp32", "bf16"):
        for mode in ("batched", "one per call"):
            if mode == "batched":
                run = lambda m=models[dtype]: m.encode(images=paths, show_progress=False)
            else:
                run = lambda m=models[dtype]: np.stack([m.encode(images=p) for p in paths])
            ratios, times = [], []
            for _ in range(repeats):
                t_peer, _ = timed(peer)
                t, out = timed(run)
                ratios.append(t_peer / t)
                times.append(t)
            ref = out if ref is None else ref
            cos = float(np.min(np.sum(out * ref, axis=1)))  # vectors are L2-normalised
            print(f"{dtype:>5} {mode:>12} {len(paths) / min(times):>9.1f} {float(np.median(ratios)):>7.2f}x {cos:>16.5f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="images for the tiny model")
    ap.add_argument("--b16-images", type=int, default=16, help="images for the B-16-sized model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-b16", action="store_true", help="skip the randomly initialised B-16-sized model")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; each row's ratio is the median over "
          f"{args.repeats} repeats of (peer time / row time), the peer run right before the row")
    with tempfile.TemporaryDirectory() as tmp:
        tiny_paths = make_images(tmp, args.images, 64)
        bench_model("tiny checkpoint (golden)", os.path.join(TINY, "bge-tiny"),
                    os.path.join(TINY, "Visualized_bge-tiny.pth"), tiny_paths, args.batch_size, args.repeats)
        if not args.no_b16:
            b16_dir = os.path.join(tmp, "b16")
            os.makedirs(b16_dir)
            text, weights = random_b16(b16_dir)
            paths = make_images(b16_dir, args.b16_images, 224, seed=1)
            bench_model("EVA02-CLIP-B-16 + BERT-base sized, random weights", text, weights, paths,
                        args.batch_size, args.repeats)


if __name__ == "__main__":
    main()
