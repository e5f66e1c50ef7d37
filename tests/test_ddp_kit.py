"""The test kit's gloo launcher tolerates an abort at process exit only after every rank finished."""
from __future__ import annotations

import atexit
import os

import pytest
from torch.multiprocessing.spawn import ProcessExitedException

from ddp_kit import spawn_gloo


def _abort_at_exit(rank: int, world: int) -> None:
    if rank == 1:
        atexit.register(os.abort)  # as gloo's teardown does under load: SIGABRT after the work is done


def _abort_in_the_work(rank: int, world: int) -> None:
    if rank == 1:
        os.abort()


def test_an_abort_after_every_rank_finished_is_a_warning():
    with pytest.warns(UserWarning, match="rank 1 aborted in gloo teardown after every rank finished"):
        spawn_gloo(_abort_at_exit, 2)


def test_an_abort_during_the_work_fails():
    with pytest.raises(ProcessExitedException, match="process 1 terminated with signal SIGABRT"):
        spawn_gloo(_abort_in_the_work, 2)
