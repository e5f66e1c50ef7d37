"""InfoNCE and the FIFO candidate queue: exact values, order, wrap-around, persistence."""
from __future__ import annotations

import math

import pytest
import torch

from kadapt.runs.checkpoint import resumable_state
from kadapt.plugins.xlmk.contrastive import (
    CandidateQueue,
    gather_across_ranks,
    info_nce,
)


def _hand_nce(q, cands, positive, temperature=1.0, skip=()):
    scores = [sum(a * b for a, b in zip(q, c)) / temperature for c in cands]
    den = sum(math.exp(s) for j, s in enumerate(scores) if j not in skip)
    return -math.log(math.exp(scores[positive]) / den)


def test_info_nce_equals_hand_computed_eq5_with_queue():
    q = [[1.0, 0.0], [0.5, 2.0]]
    k = [[0.2, 1.0], [1.0, -1.0]]
    queue = [[3.0, 0.5], [-1.0, 0.25], [0.0, 0.0]]
    cands = k + queue
    want = (_hand_nce(q[0], cands, 0) + _hand_nce(q[1], cands, 1)) / 2
    got = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor([1, 2]), torch.tensor(queue),
                   torch.tensor([7, 8, 9]))
    assert got.item() == pytest.approx(want, rel=1e-6)
    # temperature divides every score
    want_t = (_hand_nce(q[0], cands, 0, 0.5) + _hand_nce(q[1], cands, 1, 0.5)) / 2
    got_t = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor([1, 2]), torch.tensor(queue),
                     torch.tensor([7, 8, 9]), temperature=0.5)
    assert got_t.item() == pytest.approx(want_t, rel=1e-6)


def test_info_nce_masks_same_entity_candidates_but_not_the_positive():
    q = [[1.0, 0.0], [0.0, 1.0]]
    k = [[1.0, 1.0], [0.5, 0.5]]
    queue = [[2.0, 0.0]]  # an earlier key of entity 5 = query 0's own entity
    ids, queue_ids = torch.tensor([5, 6]), torch.tensor([5])
    got = info_nce(torch.tensor(q), torch.tensor(k), ids, torch.tensor(queue), queue_ids)
    want = (_hand_nce(q[0], k + queue, 0, skip={2}) + _hand_nce(q[1], k + queue, 1)) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)
    unmasked = info_nce(torch.tensor(q), torch.tensor(k), ids, torch.tensor(queue), queue_ids, mask_same_entity=False)
    assert unmasked.item() == pytest.approx((_hand_nce(q[0], k + queue, 0) + _hand_nce(q[1], k + queue, 1)) / 2)


def test_info_nce_normalize_uses_cosine():
    q, k = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    queue = torch.tensor([[10.0, 0.0]])
    got = info_nce(q, k, torch.tensor([0]), queue, torch.tensor([1]), normalize=True, temperature=0.1)
    want = _hand_nce([0.6, 0.8], [[0.0, 1.0], [1.0, 0.0]], 0, 0.1)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_queue_fifo_order_and_wrap_around_overwrite():
    queue = CandidateQueue(size=5, dim=1)
    keys, ids = queue.candidates()
    assert keys.shape == (0, 1) and ids.numel() == 0  # empty at the first step
    queue.enqueue(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1, 2, 3]))
    assert queue.candidates()[0].flatten().tolist() == [1, 2, 3]
    assert int(queue.ptr) == 3 and int(queue.filled) == 3
    queue.enqueue(torch.tensor([[4.0], [5.0], [6.0], [7.0]]), torch.tensor([4, 5, 6, 7]))
    # 4, 5 fill slots 3, 4; 6, 7 overwrite the oldest (1, 2) in slots 0, 1
    assert queue.keys.flatten().tolist() == [6, 7, 3, 4, 5]
    assert queue.ids.tolist() == [6, 7, 3, 4, 5]
    assert int(queue.ptr) == 2 and int(queue.filled) == 5
    # more keys than slots: the newest 5 stay, the pointer moves by all 8
    queue.enqueue(torch.arange(10, 18, dtype=torch.float).view(8, 1), torch.arange(10, 18))
    assert int(queue.ptr) == (2 + 8) % 5
    order = [(int(queue.ptr) + i) % 5 for i in range(5)]  # oldest → newest from the pointer
    assert [queue.keys[s].item() for s in order] == [13, 14, 15, 16, 17]


def test_queue_is_buffers_in_resumable_state_and_round_trips():
    module = torch.nn.Module()
    module.queue = CandidateQueue(size=4, dim=2)
    module.queue.enqueue(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), torch.tensor([9, 8, 7]))
    state = resumable_state(module)
    assert set(state) == {"queue.keys", "queue.ids", "queue.ptr", "queue.filled"}
    fresh = torch.nn.Module()
    fresh.queue = CandidateQueue(size=4, dim=2)
    fresh.load_state_dict(state)
    fresh.queue.enqueue(torch.tensor([[7.0, 8.0], [9.0, 10.0]]), torch.tensor([1, 2]))
    module.queue.enqueue(torch.tensor([[7.0, 8.0], [9.0, 10.0]]), torch.tensor([1, 2]))
    assert torch.equal(fresh.queue.keys, module.queue.keys) and torch.equal(fresh.queue.ids, module.queue.ids)
    assert int(fresh.queue.ptr) == 1


def test_gather_is_identity_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_across_ranks(x) is x
