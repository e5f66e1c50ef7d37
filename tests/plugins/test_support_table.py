"""The README's "Supported encoders" table is the one generated from the architecture registry."""
from __future__ import annotations

from pathlib import Path

from kadapt.core.architectures import TABLE_BEGIN, TABLE_END
from kadapt.plugins import encoder_support_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_equals_the_generated_one():
    text = README.read_text(encoding="utf-8")
    assert text.count(TABLE_BEGIN) == 1 and text.count(TABLE_END) == 1
    in_readme = text.split(TABLE_BEGIN)[1].split(TABLE_END)[0].strip()
    assert in_readme == encoder_support_table()


def test_table_cells_follow_the_refusals():
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in encoder_support_table().splitlines()[2:]}
    header = encoder_support_table().splitlines()[0].split(" | ")[1:]
    trelm, jaket = header.index("TRELM"), header.index("JAKET")
    assert rows["| ModernBERT (`modernbert`)"][trelm].startswith("refused")
    assert "refused when layers share" in rows["| ALBERT (`albert`)"][trelm]
    assert rows["| DeBERTa-v2 / v3 (`deberta-v2`)"][jaket] == "exact"
    assert rows["| any other encoder-only model"][jaket] == "refused"
    assert rows["| any other encoder-only model"][0] == "exact (full forward, slower)"
