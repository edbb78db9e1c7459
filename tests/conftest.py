import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: CI's 2 cores are shared by several jobs, and 2 threads per op contend
    badly on the tiny models. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bert():
    """The tiny golden BERT embedder (../shared/golden/models/bert-embedder) on CPU, loaded once per module."""
    from bgekit.encoder import Embedder
    from golden import GOLDEN

    return Embedder(str(GOLDEN / "models" / "bert-embedder"), devices="cpu")


@pytest.fixture(scope="module")
def m3():
    """The tiny golden BGE-M3 embedder (../shared/golden/models/m3) on CPU, loaded once per module."""
    from bgekit.m3 import M3Embedder
    from golden import GOLDEN

    return M3Embedder(str(GOLDEN / "models" / "m3"), devices="cpu")


# In CI (CI=true) a skip that means "something the test extra or .ci/run installs is missing" is a failure: the
# MTEB cross-check, the Qdrant tests and the browser test must not drop out silently. Skips that describe the
# machine (a GPU present or absent, a block marked as needing a hub download) stay skips.
CI_MUST_NOT_SKIP = ("could not import", "no Chromium", "not found (../shared", "this mteb has no offline mock tasks")


def _fail_missing_in_ci(report) -> None:
    if os.environ.get("CI", "").lower() != "true" or not report.skipped:
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(fragment in reason for fragment in CI_MUST_NOT_SKIP):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where the test extra and .ci/run provide this: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_missing_in_ci(outcome.get_result())  # a module-level importorskip
