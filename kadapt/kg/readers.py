"""Readers that turn KG releases into a :class:`KnowledgeGraph` (one registry, no if-chains).

Formats:

* ``kgbert``  — KG-BERT TSV layout (WN18RR, UMLS, FB15k-237): ``{train,dev,test}.tsv`` (head, relation,
  tail), ``entity2text.txt`` (id → ``"name, gloss"``) or ``entity2textlong.txt``, ``relation2text.txt``,
  optional ``entities.txt``/``relations.txt`` vocabularies and ``entity2category.tsv``;
* ``codex``   — CoDEx: ``triples/*.txt`` of QIDs/PIDs, ``relations/relations.<lang>.json`` labels, optional
  ``entities/<lang>/entities.json`` (labels + descriptions) and ``types/entity2types.json`` (first type
  = category);
* ``dbp15k``  — one side of a DBP15K pair: ``ent_ids_N``, ``rel_ids_N``, ``triples_N`` (names from URIs);
* ``wikidata5m`` — ``wikidata5m_entity.txt`` (QID \\t alias \\t ...), ``wikidata5m_relation.txt``,
  ``wikidata5m_text.txt`` (QID \\t description), ``wikidata5m_transductive_*.txt`` or ``*_all_triplet.txt``.

Unknown entities/relations in a triple are a ``DataError`` naming file and line, or — with
``on_error="skip"`` — a counted, logged skip.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from kadapt.data.policy import ErrorPolicy, OnError
from kadapt.data.textfile import iter_raw_lines
from kadapt.core.errors import DataError, KadaptError
from kadapt.kg.graph import KnowledgeGraph


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)``; bytes that are not UTF-8 are an error naming file and line."""
    if not path.exists():
        raise KadaptError(f"{path}: file not found")
    for number, raw in iter_raw_lines(path):
        try:
            yield number, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as err:
            raise DataError(path, number, f"not UTF-8 ({err.reason} at byte {err.start})") from None


def _tsv(path: Path, min_fields: int) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a tab-separated file; blank lines skipped; short lines are errors."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < min_fields:
            raise DataError(path, number, f"expected {min_fields} tab-separated fields, got {len(fields)}")
        yield number, fields


def _mapping(path: Path) -> dict[str, str]:
    return {f[0].strip(): f[1].strip() for _, f in _tsv(path, 2)} if path.exists() else {}


def _resolve_triples(
    files: list[Path], entity_index: dict[str, int], relation_index: dict[str, int], policy: ErrorPolicy,
    add_unknown_relations: list | None = None,
) -> list[tuple[int, int, int]]:
    triples = []
    for path in files:
        with policy.scope(path):
            for number, fields in _tsv(path, 3):
                h, r, t = (x.strip() for x in fields[:3])
                try:
                    if h not in entity_index or t not in entity_index:
                        missing = h if h not in entity_index else t
                        raise DataError(path, number, f"triple names unknown entity {missing!r}")
                    if r not in relation_index:
                        if add_unknown_relations is None:
                            raise DataError(path, number, f"triple names unknown relation {r!r}")
                        relation_index[r] = len(relation_index)
                        add_unknown_relations.append(r)
                except DataError as err:
                    policy.handle(err)
                    continue
                triples.append((entity_index[h], relation_index[r], entity_index[t]))
    return triples


def read_kgbert(directory: str | Path, policy: ErrorPolicy | OnError | None = None,
                long_descriptions: bool = False) -> KnowledgeGraph:
    """A KG-BERT data folder (WN18RR, UMLS). Entities: ``entities.txt`` or the ``entity2text`` keys."""
    root = Path(directory)
    policy = ErrorPolicy.resolve(policy)
    triple_files = [root / f"{s}.tsv" for s in ("train", "dev", "test") if (root / f"{s}.tsv").exists()]
    if not triple_files:
        raise KadaptError(f"{root}: no train.tsv/dev.tsv/test.tsv (KG-BERT layout)")
    short = _mapping(root / "entity2text.txt")
    long = _mapping(root / "entity2textlong.txt") if long_descriptions else {}
    vocab = root / "entities.txt"
    ids = [line.strip() for _, line in _lines(vocab) if line.strip()] if vocab.exists() else list(short)
    entities = []
    for eid in ids:
        text = short.get(eid, "")
        description = (f"{text}, {long[eid]}" if text else long[eid]) if long.get(eid) else text
        entities.append((eid, text.partition(", ")[0] or None, description or None))
    rel_text = _mapping(root / "relation2text.txt")
    rel_vocab = root / "relations.txt"
    rel_ids = [line.strip() for _, line in _lines(rel_vocab) if line.strip()] if rel_vocab.exists() else list(rel_text)
    relations = [(r, rel_text.get(r) or r.strip("_").replace("_", " "), None) for r in rel_ids]
    entity_index = {e[0]: i for i, e in enumerate(entities)}
    relation_index = {r[0]: i for i, r in enumerate(relations)}
    extra: list[str] = []
    triples = _resolve_triples(triple_files, entity_index, relation_index, policy, extra if not rel_ids else None)
    relations += [(r, r.strip("_").replace("_", " "), None) for r in extra]
    categories = _mapping(root / "entity2category.tsv") or None
    return KnowledgeGraph.build(entities, relations, triples, categories=categories, source=str(root),
                                stats={"skipped_triples": policy.skipped})


def read_codex(directory: str | Path, policy: ErrorPolicy | OnError | None = None, lang: str = "en") -> KnowledgeGraph:
    """A CoDEx folder: triples of QIDs, relation labels/descriptions, entity labels and types when present."""
    root = Path(directory)
    policy = ErrorPolicy.resolve(policy)
    triple_files = sorted(p for p in (root / "triples").glob("*.txt") if "negatives" not in p.name)
    if not triple_files:
        raise KadaptError(f"{root}: no triples/*.txt (CoDEx layout)")
    rel_info = _json(root / "relations" / f"relations.{lang}.json")
    ent_info = _json(root / "entities" / lang / "entities.json")
    types = _json(root / "types" / "entity2types.json")
    type_info = _json(root / "types" / f"types.{lang}.json")
    seen: dict[str, None] = {}
    for path in triple_files:
        for _, fields in _tsv(path, 3):
            seen.setdefault(fields[0].strip())
            seen.setdefault(fields[2].strip())
    entities = [(q, ent_info.get(q, {}).get("label"), ent_info.get(q, {}).get("description")) for q in seen]
    relations = [(p, v.get("label"), v.get("description")) for p, v in rel_info.items()]
    extra: list[str] = []
    triples = _resolve_triples(triple_files, {e[0]: i for i, e in enumerate(entities)},
                               {r[0]: i for i, r in enumerate(relations)}, policy, extra)
    relations += [(p, None, None) for p in extra]
    categories = {q: type_info.get(t[0], {}).get("label", t[0]) for q, t in types.items() if q in seen and t}
    return KnowledgeGraph.build(entities, relations, triples, categories=categories or None, source=str(root),
                                stats={"skipped_triples": policy.skipped})


def read_dbp15k(directory: str | Path, policy: ErrorPolicy | OnError | None = None, side: int = 1) -> KnowledgeGraph:
    """One KG of a DBP15K pair folder (``side`` 1 = zh/ja/fr, 2 = en); names from URI tails."""
    root = Path(directory)
    policy = ErrorPolicy.resolve(policy)
    if side not in (1, 2):
        raise KadaptError(f"{root}: DBP15K side must be 1 or 2, got {side}")
    ents = [(f[0].strip(), _uri_name(f[1])) for _, f in _tsv(root / f"ent_ids_{side}", 2)]
    rels = [(f[0].strip(), _uri_name(f[1])) for _, f in _tsv(root / f"rel_ids_{side}", 2)]
    entities = [(e, name, None) for e, name in ents]
    relations = [(r, name, None) for r, name in rels]
    triples = _resolve_triples([root / f"triples_{side}"], {e[0]: i for i, e in enumerate(entities)},
                               {r[0]: i for i, r in enumerate(relations)}, policy)
    return KnowledgeGraph.build(entities, relations, triples, source=f"{root}[{side}]",
                                stats={"skipped_triples": policy.skipped})


def read_wikidata5m(directory: str | Path, policy: ErrorPolicy | OnError | None = None) -> KnowledgeGraph:
    """Wikidata5M files: aliases (first = name), descriptions, relation aliases, triples."""
    root = Path(directory)
    policy = ErrorPolicy.resolve(policy)
    names = {f[0].strip(): f[1].strip() for _, f in _tsv(root / "wikidata5m_entity.txt", 2)}
    rel_names = {f[0].strip(): f[1].strip() for _, f in _tsv(root / "wikidata5m_relation.txt", 2)}
    texts = _mapping(root / "wikidata5m_text.txt")
    triple_files = sorted(root.glob("wikidata5m_transductive_*.txt")) or sorted(root.glob("*triplet*.txt"))
    if not triple_files:
        raise KadaptError(f"{root}: no wikidata5m_transductive_*.txt or *triplet*.txt triple file")
    entities = [(q, n, texts.get(q)) for q, n in names.items()]
    relations = [(p, n, None) for p, n in rel_names.items()]
    triples = _resolve_triples(triple_files, {e[0]: i for i, e in enumerate(entities)},
                               {r[0]: i for i, r in enumerate(relations)}, policy)
    return KnowledgeGraph.build(entities, relations, triples, source=str(root), stats={"skipped_triples": policy.skipped})


def read_metaqa_kb(directory: str | Path, policy: ErrorPolicy | OnError | None = None) -> KnowledgeGraph:
    """MetaQA's ``kb.txt`` (``head|relation|tail`` per line; entity ids are their names, no descriptions)."""
    root = Path(directory)
    policy = ErrorPolicy.resolve(policy)
    path = root / "kb.txt"
    entity_index: dict[str, int] = {}
    relation_index: dict[str, int] = {}
    triples = []
    with policy.scope(path):
        for number, line in _lines(path):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split("|")]
            try:
                if len(fields) != 3 or not all(fields):
                    raise DataError(path, number, f"expected head|relation|tail, got {len(fields)} field(s)")
            except DataError as err:
                policy.handle(err)
                continue
            h, r, t = fields
            for name in (h, t):
                entity_index.setdefault(name, len(entity_index))
            relation_index.setdefault(r, len(relation_index))
            triples.append((entity_index[h], relation_index[r], entity_index[t]))
    entities = [(e, e, None) for e in entity_index]
    relations = [(r, r.replace("_", " "), None) for r in relation_index]
    return KnowledgeGraph.build(entities, relations, triples, source=str(root), stats={"skipped_triples": policy.skipped})


def _uri_name(uri: str) -> str:
    return uri.strip().rstrip("/").rsplit("/", 1)[-1].replace("_", " ")


def _json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(path, getattr(err, "lineno", None), f"invalid JSON ({err})") from None


KG_READERS: dict[str, Callable[..., KnowledgeGraph]] = {
    "kgbert": read_kgbert,
    "codex": read_codex,
    "dbp15k": read_dbp15k,
    "wikidata5m": read_wikidata5m,
    "metaqa": read_metaqa_kb,
}


def detect_format(directory: str | Path) -> str:
    root = Path(directory)
    if (root / "train.tsv").exists():
        return "kgbert"
    if (root / "triples").is_dir():
        return "codex"
    if (root / "ent_ids_1").exists():
        return "dbp15k"
    if (root / "wikidata5m_entity.txt").exists():
        return "wikidata5m"
    if (root / "kb.txt").exists():
        return "metaqa"
    raise KadaptError(f"{root}: cannot tell the KG format (known: {sorted(KG_READERS)}); pass format=")


def read_kg(directory: str | Path, format: str = "auto", policy: ErrorPolicy | OnError | None = None,
            **options) -> KnowledgeGraph:
    """Read a KG folder in ``format`` (``auto`` detects it from the file names)."""
    if not Path(directory).is_dir():
        raise KadaptError(f"{directory}: KG folder not found")
    fmt = detect_format(directory) if format == "auto" else format
    try:
        reader = KG_READERS[fmt]
    except KeyError:
        raise KadaptError(f"unknown KG format {fmt!r}; known: {sorted(KG_READERS)}") from None
    return reader(directory, policy, **options)


def read_kg_triples(directory: str | Path, policy: ErrorPolicy | OnError | None = None) -> list[tuple[int, int, int]]:
    """The records of a KG folder for recipes (``data.format: kg``): its triples as index tuples,
    in a fixed shuffled order (so ``data.limit`` takes a uniform sample, not the first entities)."""
    import torch

    graph = read_kg(directory, policy=policy)
    order = torch.randperm(graph.num_triples, generator=torch.Generator().manual_seed(0))
    return [tuple(t) for t in graph.triples[order].tolist()]
