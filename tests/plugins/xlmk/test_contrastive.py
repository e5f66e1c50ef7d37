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
    got = info_nce(torch.tensor(q), torch.tensor(k), ids, torch.tensor(queue), queue_ids, mask_same_entity=True)
    want = (_hand_nce(q[0], k + queue, 0, skip={2}) + _hand_nce(q[1], k + queue, 1)) / 2
    assert got.item() == pytest.approx(want, rel=1e-6)
    # default = eq. 5 and the anchor code: the same-entity candidate stays in the denominator
    unmasked = info_nce(torch.tensor(q), torch.tensor(k), ids, torch.tensor(queue), queue_ids)
    want_unmasked = (_hand_nce(q[0], k + queue, 0) + _hand_nce(q[1], k + queue, 1)) / 2
    assert unmasked.item() == pytest.approx(want_unmasked, rel=1e-6)
    assert want > 0.8 and want_unmasked > want + 0.4  # the switch changes the loss (0.827 vs 1.322)


def test_info_nce_bidirectional_equals_hand_computed_both_directions():
    """Anchor-code form: q_i picks k_i among [k, q without q_i, queue]; k_i picks q_i among
    [q, k without k_i, queue]; the loss is the mean of the two directions."""
    q = [[1.0, 0.0], [0.5, 2.0]]
    k = [[0.2, 1.0], [1.0, -1.0]]
    queue = [[3.0, 0.5], [-1.0, 0.25]]
    fwd = [_hand_nce(q[i], k + q + queue, i, skip={2 + i}) for i in range(2)]
    bwd = [_hand_nce(k[i], q + k + queue, i, skip={2 + i}) for i in range(2)]
    want = (sum(fwd) / 2 + sum(bwd) / 2) / 2
    got = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor([1, 2]), torch.tensor(queue),
                   torch.tensor([7, 8]), bidirectional=True)
    assert got.item() == pytest.approx(want, rel=1e-6)
    one_way = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor([1, 2]), torch.tensor(queue),
                       torch.tensor([7, 8]))
    assert abs(got.item() - one_way.item()) > 0.1
    # with same-entity masking both directions drop the queued key of entity 1 for pair 0
    masked = info_nce(torch.tensor(q), torch.tensor(k), torch.tensor([1, 2]), torch.tensor(queue),
                      torch.tensor([1, 8]), bidirectional=True, mask_same_entity=True)
    fwd_m = [_hand_nce(q[0], k + q + queue, 0, skip={2, 4}), fwd[1]]
    bwd_m = [_hand_nce(k[0], q + k + queue, 0, skip={2, 4}), bwd[1]]
    assert masked.item() == pytest.approx((sum(fwd_m) / 2 + sum(bwd_m) / 2) / 2, rel=1e-6)


def test_queue_init_random_is_full_seeded_and_scaled_empty_has_no_candidates():
    rand = CandidateQueue(size=4, dim=3)  # default: the paper's / anchor code's random init
    keys, ids = rand.candidates()
    want = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) / 3 ** 0.5
    assert torch.equal(keys, want) and ids.tolist() == [-1, -1, -1, -1]
    assert int(rand.filled) == 4 and int(rand.ptr) == 0
    assert torch.equal(CandidateQueue(size=4, dim=3).keys, rand.keys)  # same on every rank
    rand.enqueue(torch.ones(1, 3), torch.tensor([9]))  # the oldest (slot 0) random key goes first
    assert rand.keys[0].tolist() == [1.0, 1.0, 1.0] and torch.equal(rand.keys[1:], want[1:])
    empty = CandidateQueue(size=4, dim=3, init="empty")
    assert empty.candidates()[0].shape == (0, 3) and int(empty.filled) == 0
    with pytest.raises(ValueError, match="queue_init"):
        CandidateQueue(size=4, dim=3, init="zeros")


def test_info_nce_normalize_uses_cosine():
    q, k = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    queue = torch.tensor([[10.0, 0.0]])
    got = info_nce(q, k, torch.tensor([0]), queue, torch.tensor([1]), normalize=True, temperature=0.1)
    want = _hand_nce([0.6, 0.8], [[0.0, 1.0], [1.0, 0.0]], 0, 0.1)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_queue_fifo_order_and_wrap_around_overwrite():
    queue = CandidateQueue(size=5, dim=1, init="empty")
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
