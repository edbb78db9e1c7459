"""benchmarks/gpu_check.py runs on a CPU (`--device cpu --quick`): its parity lines parse and are within tolerance,
and its throughput tables compare bgekit with sentence-transformers on the same weights (fp32 outputs equal).

No timing is asserted: on a CPU the timings only show that the path runs. The same script on a GPU is the one
to run when a GPU machine is lent (docs/gpu.md).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
PARITY = re.compile(r"^parity (fp32|fp16|bf16) (\S+) (\S+) (1-cos|abs)=(\S+) max_abs=(\S+) tol=(\S+) (ok|FAIL)$")
SUMMARY = re.compile(r"^parity-summary (fp16|bf16) outputs=(\d+) failed=(\d+) ")
TABLE = re.compile(r"^(encode|rerank) (.+): (\d+) items")
ROW = re.compile(r"^\s+(fp32|fp16|bf16)\s+(\S+)\s+(\S+)\s+(\S+)x\s+(1-cos|max\|d\|) (\S+)\s+(\S+)$")

pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def run():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import gpu_check

    env = dict(os.environ, OMP_NUM_THREADS="1")  # CI's two cores are shared; one thread is the steady choice
    proc = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--quick"], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return gpu_check, proc.stdout.splitlines()


def test_parity_lines_parse_and_are_within_tolerance(run):
    gpu_check, lines = run
    rows = [PARITY.match(ln) for ln in lines if ln.startswith("parity ")]
    assert rows and all(rows), [ln for ln in lines if ln.startswith("parity ") and not PARITY.match(ln)]
    by_dtype = {}
    for m in rows:
        dtype, case, key, metric, value, max_abs, tol, status = m.groups()
        value, tol = float(value), float(tol)
        assert tol == gpu_check.TOLERANCE[dtype][metric], m.group(0)
        assert 0.0 <= value <= tol and status == "ok", m.group(0)
        if dtype == "fp16":  # fp16 runs fp32 on a CPU: it must meet the fp32 bound
            assert value <= gpu_check.TOLERANCE["fp32"][metric], m.group(0)
        by_dtype.setdefault(dtype, set()).add(case)
    assert set(by_dtype) == {"fp16", "bf16"}
    classes = {c["reference_class"] for c in gpu_check.parity_cases()}
    for dtype, case_ids in by_dtype.items():  # --quick: one case of every class bgekit implements
        assert len(case_ids) == len(classes) >= 8, (dtype, sorted(case_ids))
    bf16_worst = max(float(m.group(5)) for m in rows if m.group(1) == "bf16" and m.group(4) == "1-cos")
    assert bf16_worst > 1e-6  # bf16 really ran in bf16 (real bf16 on a CPU), not in fp32
    summaries = [SUMMARY.match(ln) for ln in lines if ln.startswith("parity-summary")]
    assert [m.group(1) for m in summaries] == ["fp16", "bf16"] and all(m.group(3) == "0" for m in summaries)
    assert lines[-1].endswith("parity ok")


def test_throughput_tables_compare_with_sentence_transformers_on_equal_outputs(run):
    _, lines = run
    tables = {}
    for i, ln in enumerate(lines):
        m = TABLE.match(ln)
        if m:
            row = ROW.match(lines[i + 2])
            assert row, lines[i:i + 3]
            tables[(m.group(1), m.group(2))] = row.groups()
    assert sorted(k for k, _ in tables) == ["encode", "encode", "rerank", "rerank"]
    names = " ".join(name for _, name in tables)
    assert "all-MiniLM-L6-v2" in names and "bge-base-sized" in names and "MiniLM-sized" in names
    for (kind, name), (dtype, st, ours, ratio, metric, same, vs_fp32) in tables.items():
        assert dtype == "fp32" and float(st) > 0 and float(ours) > 0 and float(ratio) > 0
        # same weights, same dtype: bgekit's output is sentence-transformers' (measured 2e-7 at most)
        assert float(same) <= (1e-6 if kind == "encode" else 1e-5), (kind, name, same)
    assert any(ln.startswith("pool: skipped (one device") for ln in lines)
