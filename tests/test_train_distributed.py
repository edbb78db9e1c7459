"""Cross-device negatives under two CPU processes (gloo) equal one process holding the global batch.

Each process scores its half of the queries against the passages of both processes. The mean of the two
losses must equal the single-process loss, and the data-parallel average of the two processes' gradients
must equal the single-process gradients: checked on raw score functions (with both distillation losses) and
on the real embedder model (tiny BERT, dropout off).
"""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from golden import GOLDEN

BERT = str(GOLDEN / "models" / "bert-embedder")
WORLD, BATCH, GROUP, DIM = 2, 4, 3, 8  # BATCH queries in the global batch


def _tensors():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(BATCH, DIM, generator=g)
    p = torch.randn(BATCH * GROUP, DIM, generator=g)
    teacher = torch.softmax(torch.randn(BATCH, GROUP, generator=g), -1)
    return q, p, teacher


def _raw_losses(q, p, teacher, first=0):
    from bgekit.train import losses

    p_all, _ = losses.gather_with_grad(p)
    scores = losses.dense_scores(q, p_all, 0.05)
    return [losses.group_loss(scores, GROUP, first=first),
            losses.group_loss(scores, GROUP, first=first, teacher_probs=teacher, kd_loss_type="kl_div"),
            losses.group_loss(scores, GROUP, first=first, teacher_probs=teacher, kd_loss_type="m3_kd_loss")]


def _model(cross: bool):
    from bgekit.encoder import Embedder
    from bgekit.train.embedder import EmbedderTrainModel, LossConfig

    emb = Embedder(BERT, devices="cpu", dtype="fp32", pooling="cls")
    return EmbedderTrainModel(emb, LossConfig(temperature=0.05, negatives_cross_device=cross)).eval()


def _batch(model, lo, hi):
    from bgekit.train.collate import EmbedderCollator
    from bgekit.train.data import TrainGroup

    groups = [TrainGroup(f"query number {i}", [f"passage {i} {j} text" for j in range(GROUP)], None, None, None, None, False)
              for i in range(lo, hi)]
    return EmbedderCollator(model.embedder.tokenizer, 16, 16)(groups)


def _raw_case(rank):
    q, p, teacher = _tensors()
    n = BATCH // WORLD
    q = q[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    p = p[rank * n * GROUP:(rank + 1) * n * GROUP].clone().requires_grad_(True)
    out = {}
    for k, loss in enumerate(_raw_losses(q, p, teacher[rank * n:(rank + 1) * n], first=rank * n)):
        q.grad = p.grad = None
        loss.backward(retain_graph=True)
        out[f"raw{k}"] = (loss.detach(), q.grad.clone(), p.grad.clone())
    return out


def _worker(rank, port, folder):
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        out = _raw_case(rank)
        model = _model(cross=True)
        n = BATCH // WORLD
        loss = model(**_batch(model, rank * n, (rank + 1) * n))["loss"]
        loss.backward()
        grads = {k: v.grad.clone() for k, v in model.named_parameters() if v.grad is not None}
        out["model"] = (loss.detach(), grads)
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("dist"))
    torch.set_num_threads(1)
    _model(cross=False)  # import and load once here; the forked children inherit it warm
    # fork: the children reuse the imports already done here (spawn would re-import torch and transformers)
    mp.start_processes(_worker, args=(_free_port(), folder), nprocs=WORLD, join=True, start_method="fork")
    return [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("k, name", [(0, "contrastive"), (1, "kl_div"), (2, "m3_kd_loss")])
def test_raw_cross_device_loss_and_gradients_match_one_process(ranks, k, name):
    q, p, teacher = _tensors()
    q.requires_grad_(True)
    p.requires_grad_(True)
    loss = _raw_losses(q, p, teacher)[k]
    loss.backward()
    parts = [r[f"raw{k}"] for r in ranks]
    assert torch.allclose(sum(x[0] for x in parts) / WORLD, loss.detach(), atol=1e-6), name
    # data-parallel training averages the processes' gradients
    assert torch.allclose(torch.cat([x[1] for x in parts]) / WORLD, q.grad, atol=1e-6), name
    assert torch.allclose(torch.cat([x[2] for x in parts]) / WORLD, p.grad, atol=1e-6), name


def test_model_cross_device_loss_and_gradients_match_one_process(ranks):
    torch.set_num_threads(1)
    model = _model(cross=False)
    loss = model(**_batch(model, 0, BATCH))["loss"]
    loss.backward()
    per_rank = [r["model"] for r in ranks]
    assert torch.allclose(sum(x[0] for x in per_rank) / WORLD, loss.detach(), atol=1e-5)
    grads = {k: v.grad for k, v in model.named_parameters() if v.grad is not None}
    assert set(grads) == set(per_rank[0][1]) and len(grads) > 10
    for name, g in grads.items():
        avg = sum(x[1][name] for x in per_rank) / WORLD
        assert torch.allclose(avg, g, atol=1e-5, rtol=1e-4), name


def test_torchrun_two_processes_train_with_cross_device_negatives(tmp_path):
    import subprocess
    import sys

    data = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples", "embedder", "retrieval", "msmarco.jsonl")
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "bgekit.cli", "train", "embedder", "--model", BERT, "--train-data", data, "--output-dir", str(out),
           "--max-steps", "4", "--save-steps", "2", "--per-device-train-batch-size", "2", "--train-group-size", "3",
           "--negatives-cross-device", "--report-to", "none", "--use-cpu", "true", "--query-max-len", "16",
           "--passage-max-len", "24"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"checkpoint-2", "checkpoint-4", "bgekit_spec.json"} <= set(os.listdir(out))
    from bgekit import load_embedder

    assert load_embedder(str(out), devices="cpu").encode("x").shape == (32,)
