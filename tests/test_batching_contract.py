"""run_sorted's contract with its forward function: one result per item, in input order, whatever the batching."""
import numpy as np
import pytest

from bgekit.batching import run_sorted


def test_a_forward_that_drops_an_item_is_an_error_naming_the_counts():
    with pytest.raises(RuntimeError, match="forward returned 1 results for a batch of 2"):
        run_sorted(["a", "bb", "ccc"], [1, 2, 3], lambda batch: batch[:1], batch_size=2)


def test_results_come_back_in_input_order_for_every_batch_size():
    items = [f"x{i}" * (i % 5 + 1) for i in range(23)]
    lengths = [len(s) for s in items]
    for batch_size in (1, 2, 5, 64):
        out = run_sorted(items, lengths, lambda batch: np.array([len(s) for s in batch]), batch_size=batch_size)
        assert [int(v) for v in out] == lengths
