"""``kadapt import kadapter`` and ``kadapt export kadapter``: thin layers over :mod:`reference_io`."""
from __future__ import annotations

from kadapt.core.errors import KadaptError
from kadapt.core.family import command_group


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise KadaptError(f"--layers {text!r}: expected comma-separated layer indices, e.g. 0,11,22") from None


def cmd_import_kadapter(args) -> int:
    from kadapt.plugins.kadapter.reference_io import import_reference_checkpoint

    out = import_reference_checkpoint(args.checkpoint, args.backbone, args.out, layers=parse_layers(args.layers),
                                      heads=args.heads, skip_layers=args.skip_layers, name=args.name,
                                      overwrite=args.overwrite)
    print(f"plug-in written to {out}")
    return 0


def cmd_export_kadapter(args) -> int:
    from kadapt.plugins.kadapter.reference_io import export_reference_layout

    out = export_reference_layout(args.plugin, args.out, backbone=args.backbone, overwrite=args.overwrite)
    print(f"reference-layout weights written to {out}")
    return 0


def add_commands(subparsers) -> None:
    group = command_group(subparsers, "import", "Bring weights written by other code into a kadapt plug-in folder.")
    p = group.add_parser("kadapter", help="A reference K-Adapter checkpoint (microsoft/K-Adapter fac-adapter.py / "
                                          "lin-adapter.py pytorch_model.bin, or a safetensors copy).")
    p.add_argument("checkpoint", help="The checkpoint file, or a folder holding pytorch_model.bin / model.safetensors.")
    p.add_argument("--backbone", required=True, help="The backbone it was trained on: hub name (roberta-large) or folder.")
    p.add_argument("--out", required=True, help="Plug-in folder to write.")
    p.add_argument("--layers", help="Backbone layers the adapters read, comma-separated (default: the reference "
                                    "scripts' 0,11,22; the checkpoint does not record them).")
    p.add_argument("--heads", type=int, help="Attention heads of the adapter transformer (default 12, the reference's).")
    p.add_argument("--skip-layers", type=int, default=0, help="The reference's adapter_skip_layers (default 0, "
                                                                "what its scripts pass; only no-op values accepted).")
    p.add_argument("--name", help="Plug-in name (default: kadapter-imported).")
    p.add_argument("--overwrite", action="store_true", help="Replace a plug-in already at --out.")
    p.set_defaults(func=cmd_import_kadapter)

    group = command_group(subparsers, "export", "Write a plug-in in a format other tools read.")
    p = group.add_parser("kadapter", help="A K-Adapter plug-in in the reference state-dict layout (safetensors).")
    p.add_argument("plugin", help="The plug-in folder.")
    p.add_argument("--out", required=True, help="Folder to write.")
    p.add_argument("--backbone", help="Check the plug-in against this backbone (default: sizes from its config).")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export_kadapter)
