"""Raw text in a task's natural markup → plain text and character spans (``model.predict(texts)``).

Relation heads read ``@ subject @ ... # object #`` (K-Adapter's markers) or SemEval's
``<e1>subject</e1> ... <e2>object</e2>``; entity typing reads ``@ mention @``. The markers are removed
(with the one space inside each), so ``"@ Obama @ was born in # Hawaii # ."`` becomes ``"Obama was
born in Hawaii ."`` with the subject span (0, 5) and the object span (18, 24) -- the record a data file
would give. A text without the markup is a :class:`~kadapt.core.errors.DataError` naming the markup.
"""
from __future__ import annotations

from kadapt.core.errors import DataError

#: the relation markups, tried in this order: {entity: (opening, closing)}
RELATION_MARKUPS = ({"subj": ("<e1>", "</e1>"), "obj": ("<e2>", "</e2>")},
                    {"subj": ("@", "@"), "obj": ("#", "#")})
RELATION_HINT = "the subject between @ … @ and the object between # … # (or <e1>…</e1> … <e2>…</e2>), " \
                "e.g. '@ Obama @ was born in # Hawaii # .'"
MENTION_MARKUP = {"mention": ("@", "@")}
MENTION_HINT = "the mention between @ … @, e.g. 'In 1905 @ Einstein @ published four papers .'"


def _marker_ranges(text: str, opening: str, closing: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Character ranges of the first opening marker and the closing one after it (each with the space
    inside the marked span), or None."""
    start = text.find(opening)
    if start < 0:
        return None
    inner = start + len(opening)
    end = text.find(closing, inner)
    if end < 0 or not text[inner:end].strip():
        return None
    open_end = inner + (1 if text[inner:inner + 1] == " " else 0)
    close_start = end - (1 if text[end - 1:end] == " " and end - 1 >= open_end else 0)
    return (start, open_end), (close_start, end + len(closing))


def strip_markup(text: str, markup: dict[str, tuple[str, str]]) -> tuple[str, dict[str, tuple[int, int]]] | None:
    """``text`` without the markers of ``markup`` and each entity's span in it; None when an entity's
    markers are missing."""
    cuts, inner = [], {}
    for name, (opening, closing) in markup.items():
        found = _marker_ranges(text, opening, closing)
        if found is None:
            return None
        (o_start, o_end), (c_start, c_end) = found
        cuts += [(o_start, o_end), (c_start, c_end)]
        inner[name] = (o_end, c_start)
    cuts.sort()
    if any(a[1] > b[0] for a, b in zip(cuts, cuts[1:])):
        return None  # overlapping markers (e.g. '@' used for both entities)

    def shift(position: int) -> int:
        return position - sum(min(end, position) - start for start, end in cuts if start < position)

    plain = "".join(text[end:start] for (_, end), (start, _) in zip([(0, 0), *cuts], [*cuts, (len(text), 0)]))
    return plain, {name: (shift(a), shift(b)) for name, (a, b) in inner.items()}


def relation_spans(text: str, source: str) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """Plain text, subject span and object span of a relation text in either markup."""
    for markup in RELATION_MARKUPS:
        found = strip_markup(text, markup)
        if found is not None:
            plain, spans = found
            return plain, spans["subj"], spans["obj"]
    raise DataError(source, None, f"{_short(text)}: a relation head needs {RELATION_HINT}")


def mention_span(text: str, source: str) -> tuple[str, tuple[int, int]]:
    """Plain text and mention span of an entity-typing text (``@ mention @``)."""
    found = strip_markup(text, MENTION_MARKUP)
    if found is None:
        raise DataError(source, None, f"{_short(text)}: the entity_typing head needs {MENTION_HINT}")
    plain, spans = found
    return plain, spans["mention"]


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
