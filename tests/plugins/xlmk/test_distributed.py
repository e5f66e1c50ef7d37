"""The gathered-candidate loss under torch.distributed (2 gloo processes) has the single-process gradient.

This checks gradients directly (the DDP infusion test compares loss curves, where Adam's sign-like
first steps would hide a missing gradient term): each rank computes the XLM-K loss on its half of the
batch, gradients are averaged as DDP does, and the result must equal one process on the whole batch,
at the first step (empty queue) and the second (queue filled with the gathered keys of the first).
"""
from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from kadapt.data.encoding import collate
from kadapt.core.fileio import load_tensors, save_tensors
from kadapt.plugins.xlmk.objective import XLMKObjective


class FeatureModel(nn.Module):
    """Stands in for KnowledgeModel: trainable token features, a pad id."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 8)
        self.backbone = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(pad_token_id=1)))

    def features(self, ids, mask):
        return self.emb(ids) * mask[..., None]


def _records(step: int) -> list[dict]:
    gen = torch.Generator().manual_seed(step)
    out = []
    for i in range(8):
        n, m = 3 + i % 3, 2 + (i * 7) % 4
        task = int(torch.randint(0, 2, (1,), generator=gen))
        out.append({"input_ids": torch.randint(2, 40, (n,), generator=gen).tolist(), "q_pos": i % n,
                    "key_input_ids": torch.randint(2, 40, (m,), generator=gen).tolist(),
                    "relation": i % 2, "task": task, "key_entity": int(torch.randint(0, 5, (1,), generator=gen))})
    return out


def _run(rank: int, world: int, out: str) -> None:
    torch.manual_seed(0)
    model = FeatureModel()
    head = XLMKObjective(8, relations=["a", "b"], queue_size=6, temperature=0.5, normalize=True, queue_init="empty")
    head.train()
    grads = {}
    for step in (1, 2):
        records = _records(step)
        if world > 1:
            records = records[rank * 4:(rank + 1) * 4]  # split_batches: contiguous halves
        out_ = head.step(model, collate(records, 1))
        out_.loss.backward()
        for name, p in [*model.named_parameters(), *head.named_parameters()]:
            g = p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            if world > 1:
                torch.distributed.all_reduce(g)
                g /= world
            grads[f"{step}.{name}"] = g
            p.grad = None
    grads.update({f"queue.{k}": v.float() for k, v in head.extra_tensors().items()})
    save_tensors(f"{out}-{rank}.safetensors", grads)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _run(rank, world, out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_rank_gradients_equal_single_process(tmp_path):
    _run(0, 1, str(tmp_path / "single"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path / "ddp")), nprocs=2, join=True)
    single, _ = load_tensors(tmp_path / "single-0.safetensors")
    for rank in (0, 1):
        ddp, _ = load_tensors(tmp_path / f"ddp-{rank}.safetensors")
        assert sorted(ddp) == sorted(single)
        for key in single:
            assert torch.allclose(ddp[key], single[key], atol=1e-6, rtol=1e-5), key
    assert single["1.emb.weight"].abs().sum() > 0 and single["2.subject_proj.0.weight"].abs().sum() > 0
