import pytest
import torch

from bgekit.batching import check_texts, length_order, map_devices, run_sorted


def _double(device, xs):
    return [2 * x for x in xs]


def _boom(device, xs):
    raise KeyError(f"bad item on {device}")


def _die(device, xs):
    import os

    os._exit(3)


def test_order_is_restored_and_batches_are_length_sorted():
    seen = []

    def forward(batch):
        seen.append([len(s) for s in batch])
        return [s.upper() for s in batch]

    items = ["bb", "a", "dddd", "ccc", "e"]
    out = run_sorted(items, [len(s) for s in items], forward, batch_size=2)
    assert out == ["BB", "A", "DDDD", "CCC", "E"]
    assert seen == [[4, 3], [2, 1], [1]]


def test_stable_sort_keeps_input_order_for_equal_lengths():
    assert length_order([1, 2, 2, 1]).tolist() == [1, 2, 0, 3]


def test_oom_halves_the_batch_and_retries():
    sizes = []

    def forward(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return [x + 1 for x in batch]

    assert run_sorted(list(range(7)), [1] * 7, forward, batch_size=8) == list(range(1, 8))
    assert sizes[:3] == [7, 4, 2]  # first try has all 7 items, then 4 (8 // 2), then 2


def test_other_runtime_errors_are_not_swallowed():
    calls = []

    def forward(batch):
        calls.append(len(batch))
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_sorted([1, 2, 3], [1, 1, 1], forward, batch_size=2)
    assert calls == [2]


def test_oom_at_batch_size_one_gives_a_clear_error():
    def forward(batch):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    with pytest.raises(RuntimeError, match="even at batch size 1"):
        run_sorted(["x"], [1], forward, batch_size=1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "8"])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        run_sorted([1], [1], lambda b: b, batch_size=bad)


def test_check_texts():
    assert check_texts("a") == (["a"], True)
    assert check_texts(["", "b"]) == (["", "b"], False)
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        check_texts(["a", 3])
    with pytest.raises(TypeError, match="None"):
        check_texts(None)


def test_map_devices_runs_chunks_in_order():
    assert map_devices(_double, [([1, 2],), ([3],), ([4],)], ["cpu", "cpu"]) == [[2, 4], [6], [8]]


def test_map_devices_reports_worker_exception_instead_of_hanging():
    with pytest.raises(RuntimeError, match="KeyError: 'bad item on cpu'"):
        map_devices(_boom, [([1],), ([2],)], ["cpu", "cpu"])


def test_map_devices_reports_a_worker_that_dies_after_starting():
    with pytest.raises(RuntimeError, match=r"died without an answer: \[\('cpu', 3\)"):
        map_devices(_die, [([1],)], ["cpu"])


def test_map_devices_without_main_guard_fails_fast_with_the_fix(tmp_path):
    """A script without `if __name__ == "__main__":` used to hang forever in Process.start()."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text("import operator\nfrom bgekit.batching import map_devices\n"
                      "print(map_devices(operator.add, [('x',), ('y',)], ['cpu', 'cpu']))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "died while starting" in last and 'if __name__ == "__main__":' in last


def test_map_devices_with_main_guard_works(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "guarded.py"
    script.write_text("import operator\nfrom bgekit.batching import map_devices\nif __name__ == '__main__':\n"
                      "    print(map_devices(operator.add, [('x',), ('y',)], ['cpu', 'cpu']))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['cpux', 'cpuy']"
