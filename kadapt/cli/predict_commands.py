"""``kadapt predict``: batched predictions of a fine-tuned run folder over a data file or raw texts."""
from __future__ import annotations

import json

from kadapt.core.errors import KadaptError
from kadapt.runs.predict import predict_file


def cmd_predict(args) -> int:
    if args.text:
        return _predict_texts(args)
    if not args.data or not args.out:
        raise KadaptError("predict needs --data FILE --out PREDS.jsonl, or --text 'TEXT' ...")
    result = predict_file(args.run_dir, args.data, args.out, args.format, batch_size=args.batch_size,
                          on_error=args.on_error)
    print(f"{result.examples} predictions written to {result.out} "
          f"({result.examples_per_second:.1f} examples/s, {result.seconds:.2f} s)")
    if result.skipped:
        print(f"skipped records: {json.dumps(result.skipped)}")
    return 0


def _predict_texts(args) -> int:
    """``--text`` (repeatable): one JSON line per text (text, label, score), to stdout or ``--out``."""
    from kadapt.core.model import KnowledgeModel
    from kadapt.core.fileio import atomic_write_text

    if args.data:
        raise KadaptError("predict: pass --data FILE or --text TEXT, not both")
    model = KnowledgeModel.from_pretrained(args.run_dir)
    lines = [json.dumps(p, ensure_ascii=False) for p in model.predict(args.text, batch_size=args.batch_size)]
    if args.out:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
        print(f"{len(lines)} predictions written to {args.out}")
    else:
        print("\n".join(lines))
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("predict", help="Batched predictions of a fine-tuned run folder over a data file "
                                              "or raw texts (--text).")
    p.add_argument("run_dir", help="A fine-tuned run folder (kadapt finetune / model.save_pretrained) or Hub repo id.")
    p.add_argument("--data", help="Data file to predict (the run's format unless --format).")
    p.add_argument("--text", action="append", help="A raw text in the head's markup, e.g. '@ Obama @ was born in "
                                                   "# Hawaii # .' (repeat for several); prints JSON lines.")
    p.add_argument("--out", help="Output JSONL (one line per record: source, prediction); needed with --data.")
    p.add_argument("--format", help="Data format (default: the run's).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    p.set_defaults(func=cmd_predict)
