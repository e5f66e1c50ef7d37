"""``kadapt checkpoint consolidate FOLDER``: join the shards of an FSDP checkpoint into full tensors."""
from __future__ import annotations


def cmd_checkpoint(args) -> int:
    from kadapt.runs.sharded_checkpoint import consolidate_checkpoint

    folder = consolidate_checkpoint(args.folder)
    print(f"{folder}: consolidated (resumes on any number of processes)")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("checkpoint", help="Training checkpoints (consolidate a sharded FSDP checkpoint).")
    csub = p.add_subparsers(dest="checkpoint_command", required=True)
    c = csub.add_parser("consolidate", help="Join the per-process shards of a checkpoint (training.checkpoint_format: "
                                            "sharded) into full tensors, in place, so it resumes on any number of processes.")
    c.add_argument("folder", help="A checkpoint folder, e.g. RUN/checkpoints/step-0000300.")
    p.set_defaults(func=cmd_checkpoint)
