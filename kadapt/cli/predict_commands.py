"""``kadapt predict``: batched predictions of a fine-tuned run folder over a data file."""
from __future__ import annotations

import json

from kadapt.runs.predict import predict_file


def cmd_predict(args) -> int:
    result = predict_file(args.run_dir, args.data, args.out, args.format, batch_size=args.batch_size,
                          on_error=args.on_error)
    print(f"{result.examples} predictions written to {result.out} "
          f"({result.examples_per_second:.1f} examples/s, {result.seconds:.2f} s)")
    if result.skipped:
        print(f"skipped records: {json.dumps(result.skipped)}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("predict", help="Batched predictions of a fine-tuned run folder over a data file.")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="Output JSONL (one line per record: source, prediction).")
    p.add_argument("--format", help="Data format (default: the run's).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    p.set_defaults(func=cmd_predict)
