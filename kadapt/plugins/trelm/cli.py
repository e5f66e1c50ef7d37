"""``kadapt export merged``: thin layer over :func:`kadapt.plugins.trelm.export.export_merged`."""
from __future__ import annotations

from kadapt.core.family import command_group


def cmd_export_merged(args) -> int:
    from kadapt.plugins.trelm.export import export_merged

    out = export_merged(args.plugin, args.backbone, args.out, overwrite=args.overwrite)
    print(f"merged model written to {out}")
    return 0


def add_commands(subparsers) -> None:
    group = command_group(subparsers, "export", "Write a plug-in in a format other tools read.")
    p = group.add_parser("merged", help="A TRELM plug-in's delta merged into a plain transformers model "
                                        "(AutoModel.from_pretrained reads it).")
    p.add_argument("plugin", help="The TRELM plug-in folder.")
    p.add_argument("--backbone", required=True, help="The backbone it was infused on (hub name or folder).")
    p.add_argument("--out", required=True, help="Folder to write.")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export_merged)
