"""Data formats: a recipe's ``data.format`` name → reader. The shared (family-agnostic) formats are
registered here (``kg``, the triples of a KG folder, by :mod:`kadapt.kg`); plug-in families register
their own through ``register_family(Family(formats=...))``.
Readers are imported when a file is read, so listing formats stays cheap."""
from __future__ import annotations

import random
from pathlib import Path

from kadapt.core.errors import KadaptError
from kadapt.core.family import format_names, format_reader, register_format
from kadapt.data.policy import ErrorPolicy
from kadapt.data.records import record_label


def _lama(path, policy=None):
    from kadapt.data.relations import read_lama_trex, read_lama_trex_dir

    return read_lama_trex_dir(path, policy=policy) if Path(path).is_dir() else read_lama_trex(path, policy=policy)


def _trex_rc(path, policy=None):
    from kadapt.data.relations import read_trex_rc

    return read_trex_rc(path, policy=policy)


def _fewrel(path, policy=None):
    from kadapt.data.relations import read_fewrel

    return read_fewrel(path, policy=policy)


def _open_entity(path, policy=None):
    from kadapt.data.open_entity import read_open_entity

    return read_open_entity(path, policy=policy)


def _figer(path, policy=None):
    from kadapt.data.figer import read_figer

    return read_figer(path, policy=policy)


def _open_qa(path, policy=None):
    from kadapt.data.open_qa import read_open_qa

    return read_open_qa(path, policy=policy)


def _semeval2010(path, policy=None):
    from kadapt.data.semeval import read_semeval2010

    return read_semeval2010(path, policy=policy)


def _conllu(path, policy=None):
    from kadapt.data.conllu import read_conllu

    return read_conllu(path, policy=policy)


def _raw_text_spacy(path, policy=None):
    from kadapt.data.raw_text import read_raw_text

    return read_raw_text(path, policy=policy)


def _lama_cloze(path, policy=None):
    from kadapt.data.lama_cloze import read_lama_cloze

    return read_lama_cloze(path, policy=policy)


def _task(name: str):
    """Reader ``name`` of :mod:`kadapt.data.task_formats`, imported when used."""
    def read(path, policy=None):
        from kadapt.data import task_formats

        return getattr(task_formats, name)(path, policy=policy)

    return read


SHARED_FORMATS = {
    "trex_rc": _trex_rc,
    "tacred": _trex_rc,
    "fewrel": _fewrel,
    "lama_trex": _lama,
    "conllu": _conllu,
    "raw_text_spacy": _raw_text_spacy,
    "conllu_upos": _task("read_conllu_upos"),
    "conll_ner": _task("read_conll_ner"),
    "cosmosqa": _task("read_cosmosqa"),
    "squad": _task("read_squad"),
    "mlqa": _task("read_squad"),
    "xnli": _task("read_xnli"),
    "lama_cloze": _lama_cloze,
    "text_lines": _task("read_text_lines"),
    "open_entity": _open_entity,
    "figer": _figer,
    "searchqa": _open_qa,
    "quasar_t": _open_qa,
    "semeval2010": _semeval2010,
}
def _spacy_note() -> str:
    from kadapt.data.raw_text import parser_description

    return f"parsed from raw text by {parser_description()}"


# what a plug-in card says about how a format's records were made (beyond the file names)
FORMAT_NOTES = {"raw_text_spacy": _spacy_note}


def format_note(name: str) -> str | None:
    note = FORMAT_NOTES.get(name)
    return note() if note is not None else None


for _name, _reader in SHARED_FORMATS.items():
    register_format(_name, _reader)


def reader_names() -> list[str]:
    """Every registered format (shared and the families')."""
    return format_names()


def read_records(fmt: str, path: str | Path, policy: ErrorPolicy | None = None, limit: int | None = None,
                 seed: int = 0) -> list:
    """All records of ``path`` in format ``fmt``; with ``limit``, a seeded label-stratified subset.

    ``limit`` (recipe ``data.limit``) keeps ``limit`` records chosen in proportion to each label's share
    (every label present when ``limit`` >= the number of labels), seeded by ``seed`` and returned in
    file order; not a file prefix, which in label-sorted files (LAMA T-REx) would keep one label.
    Formats whose records carry no label (dependency trees, text, XLM-K's interleaved knowledge) keep
    the first ``limit`` records: there is no label mix to preserve, and the reader's order is kept.
    """
    reader = format_reader(fmt)
    if not Path(path).exists():
        raise KadaptError(f"{path}: data file not found")
    records = list(reader(path, policy=policy))
    if limit is None or len(records) <= limit:
        return records
    return stratified_subset(records, limit, seed)


def stratified_subset(records: list, limit: int, seed: int) -> list:
    """``limit`` records, label-proportional: each record gets the key (rank in its shuffled label
    group) / (group size); the smallest keys win (ties in seeded random order); file order kept."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(record_label(record), []).append(index)
    if set(groups) == {""}:
        return records[:limit]
    keys = []
    for members in groups.values():
        rng.shuffle(members)
        keys += [(rank / len(members), rng.random(), index) for rank, index in enumerate(members)]
    chosen = sorted(index for _, _, index in sorted(keys)[:limit])
    return [records[i] for i in chosen]
