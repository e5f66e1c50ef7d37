"""Helpers to launch kadapt runs in fresh processes (plain and under ``accelerate launch``)."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

TESTS = Path(__file__).resolve().parent
LAUNCHER = TESTS / "run_kit.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "LOCAL_RANK", "RANK", "WORLD_SIZE"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               CUDA_VISIBLE_DEVICES="", MASTER_ADDR="127.0.0.1", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), str(TESTS.parent), env.get("PYTHONPATH")])))
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _gloo_worker(rank: int, world: int, port: int, fn, args: tuple, done: str) -> None:
    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
        torch.distributed.barrier()  # no rank tears gloo down while another still talks to it
        (Path(done) / f"rank-{rank}").touch()  # this rank's work is complete
    finally:
        torch.distributed.destroy_process_group()


def spawn_gloo(fn, world: int, *args) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` fresh processes joined by a gloo process group
    (``fn`` must be importable: a module-level function of a test module).

    Under load, gloo's background threads sometimes abort a process while it exits ("terminate called
    without an active exception", SIGABRT) after its work is done. That abort is tolerated only when every
    rank got past the final barrier (each leaves a marker file); any other failure is raised."""
    import tempfile
    import warnings

    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessExitedException

    with tempfile.TemporaryDirectory() as done:
        try:
            mp.spawn(_gloo_worker, args=(world, _free_port(), fn, args, done), nprocs=world, join=True)
        except ProcessExitedException as err:
            finished = all((Path(done) / f"rank-{rank}").exists() for rank in range(world))
            if not (finished and err.signal_name == "SIGABRT"):
                raise
            warnings.warn(f"rank {err.error_index} aborted in gloo teardown after every rank finished", stacklevel=2)
