"""LAMA cloze queries for probing (Petroni et al., 2019), format ``lama_cloze``.

* A LAMA data folder (with ``relations.jsonl`` and ``TREx/P*.jsonl[.gz]``) or one T-REx relation file
  (``relations.jsonl`` is then looked up next to it or one folder up): each fact becomes the relation's
  template with ``[X]`` = ``sub_label`` and ``[Y]`` = ``[MASK]``; the answer is ``obj_label``.
* A file of ``{"masked_sentences": [...], "obj_label", "id"}`` lines (LAMA's Squad/ConceptNet files):
  the first masked sentence is the query.

Records carry the literal ``[MASK]``; the probe head swaps in the tokenizer's own mask token.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import ClozeExample
from kadapt.data.textfile import iter_json_objects
from kadapt.core.errors import DataError

MASK = "[MASK]"


def read_templates(path: Path) -> dict[str, str]:
    """``relation id -> template`` from LAMA's ``relations.jsonl``."""
    templates = {}
    for lineno, obj in iter_json_objects(path, ErrorPolicy("raise")):
        template = obj.get("template")
        if not isinstance(template, str) or "[X]" not in template or "[Y]" not in template:
            raise DataError(path, lineno, f"template must contain [X] and [Y], got {template!r}")
        templates[str(obj.get("relation"))] = template
    return templates


def _find_templates(path: Path) -> Path | None:
    for folder in (path if path.is_dir() else path.parent, path.parent, path.parent.parent):
        if (folder / "relations.jsonl").is_file():
            return folder / "relations.jsonl"
    return None


def read_lama_cloze(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[ClozeExample]:
    path, policy = Path(path), ErrorPolicy.resolve(policy)
    if path.is_dir():
        trex = path / "TREx" if (path / "TREx").is_dir() else path
        files = sorted(list(trex.glob("P*.jsonl")) + list(trex.glob("P*.jsonl.gz")),
                       key=lambda p: int(p.name.split(".")[0][1:]) if p.name.split(".")[0][1:].isdigit() else 0)
        if not files:
            raise DataError(path, None, "no TREx/P*.jsonl[.gz] relation files")
    else:
        files = [path]
    found = _find_templates(path)
    templates = read_templates(found) if found is not None else {}
    for file in files:
        with policy.scope(file):
            for lineno, obj in iter_json_objects(file, policy):
                try:
                    yield _cloze(file, lineno, obj, templates)
                except DataError as err:
                    policy.handle(err)


def _cloze(file: Path, lineno: int, obj: dict, templates: dict[str, str]) -> ClozeExample:
    answer = obj.get("obj_label")
    if not isinstance(answer, str) or not answer.strip():
        raise DataError(file, lineno, f"obj_label must be a non-empty string, got {answer!r}")
    uid = str(obj.get("uuid") or obj.get("id") or f"{file.name}:{lineno}")
    if "masked_sentences" in obj:
        sentences = obj["masked_sentences"]
        if not isinstance(sentences, list) or not sentences or MASK not in str(sentences[0]):
            raise DataError(file, lineno, "masked_sentences[0] must be a sentence with [MASK]")
        return ClozeExample(uid, str(sentences[0]), answer, str(obj.get("sub_label", "")), f"{file}:{lineno}")
    relation, subject = obj.get("predicate_id"), obj.get("sub_label")
    if relation not in templates:
        raise DataError(file, lineno, f"relation {relation!r} has no template (relations.jsonl in this folder "
                        "or the two above it)")
    if not isinstance(subject, str) or not subject.strip():
        raise DataError(file, lineno, f"sub_label must be a non-empty string, got {subject!r}")
    text = templates[relation].replace("[X]", subject).replace("[Y]", MASK)
    return ClozeExample(uid, text, answer, relation, f"{file}:{lineno}")
