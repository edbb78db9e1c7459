"""Time of `python -c "import bgekit"` against a bare interpreter start (best of N), and what it loads.

    python benchmarks/bench_import.py [--repeats 10]
"""
import argparse
import subprocess
import sys
import time


def best(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    n = ap.parse_args().repeats
    bare = best([sys.executable, "-c", "pass"], n)
    full = best([sys.executable, "-c", "import bgekit"], n)
    heavy = subprocess.run([sys.executable, "-c", "import sys, bgekit; print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"python -c pass:          {bare * 1000:7.1f} ms")
    print(f"python -c 'import bgekit': {full * 1000:7.1f} ms  (bgekit itself: {(full - bare) * 1000:.1f} ms)")
    print(f"heavy modules loaded by import bgekit: {heavy}")


if __name__ == "__main__":
    main()
