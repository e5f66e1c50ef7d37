"""Registry of data formats: ``format`` name in a recipe → reader function."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy
from kadapt.core.errors import KadaptError


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


def _kg(path, policy=None):
    from kadapt.kg.readers import read_kg_triples

    return read_kg_triples(path, policy=policy)


def _kg_entities(path, policy=None):
    from kadapt.plugins.jaket.kg_entity_classification import read_kg_entities

    return read_kg_entities(path, policy=policy)


def _metaqa(path, policy=None):
    from kadapt.plugins.jaket.kgqa import read_metaqa_questions

    return read_metaqa_questions(path, policy=policy)


def _xlmk_knowledge(path, policy=None):
    from kadapt.plugins.xlmk.converters import read_knowledge_source

    return read_knowledge_source(path, policy=policy)


def _task(name: str):
    """Reader ``name`` of :mod:`kadapt.data.task_formats` / :mod:`kadapt.data.lama_cloze`, imported lazily."""
    def read(path, policy=None):
        from kadapt.data import lama_cloze, task_formats

        module = lama_cloze if name == "read_lama_cloze" else task_formats
        return getattr(module, name)(path, policy=policy)

    return read


READERS: dict[str, Callable[..., Iterator]] = {
    "trex_rc": _trex_rc,
    "tacred": _trex_rc,
    "fewrel": _fewrel,
    "lama_trex": _lama,
    "conllu": _conllu,
    "kg": _kg,
    "kg_entities": _kg_entities,
    "metaqa": _metaqa,
    "xlmk_knowledge": _xlmk_knowledge,
    "conllu_upos": _task("read_conllu_upos"),
    "conll_ner": _task("read_conll_ner"),
    "cosmosqa": _task("read_cosmosqa"),
    "squad": _task("read_squad"),
    "mlqa": _task("read_squad"),
    "xnli": _task("read_xnli"),
    "lama_cloze": _task("read_lama_cloze"),
    "text_lines": _task("read_text_lines"),
    "open_entity": _open_entity,
    "figer": _figer,
    "searchqa": _open_qa,
    "quasar_t": _open_qa,
    "semeval2010": _semeval2010,
}


def reader_names() -> list[str]:
    return sorted(READERS)


def read_records(fmt: str, path: str | Path, policy: ErrorPolicy | None = None, limit: int | None = None) -> list:
    """All records of ``path`` in format ``fmt`` (the first ``limit`` when given)."""
    try:
        reader = READERS[fmt]
    except KeyError:
        raise KadaptError(f"unknown data format {fmt!r}; known: {reader_names()}") from None
    if not Path(path).exists():
        raise KadaptError(f"{path}: data file not found")
    records = []
    for record in reader(path, policy=policy):
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    return records
