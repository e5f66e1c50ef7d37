"""Markdown table rows shared by the table renderers of ``benchmarks/tables.py``."""
from __future__ import annotations


def md_rows(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: header, alignment row (``---`` / ``---:``), one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"
