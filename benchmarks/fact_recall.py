"""Fact-recall probe data for ``benchmarks/knowledge_effect.py``: does the plug-in STORE the infused facts?

Relation prediction from the two entity names alone (``"<subject> <object>"``, no sentence: the context is
removed), so a head can only succeed from what the backbone and the plug-in know about the pair.

- **Infused facts**: (subject id, object id, relation) facts whose evidence sentences were in the factual
  infusion's training split (the exact split ``kadapt infuse`` read: same recipe, ``data.limit`` and
  ``data.seed``).
- **Held-out facts**: LAMA T-REx facts whose entity pair occurs nowhere in the infusion's train or dev split.

The probe head trains on held-out facts (``train``/``dev``) and is tested on two sets of the same size and the
same relation counts: ``test_infused`` and ``test_held_out`` (held-out facts not used for training). The
difference infused − held-out of one run is what the plug-in stores beyond what the names carry; for an
R-twin it should be ~0. One example per fact (its first evidence's surface names); written as T-REx-rc
JSON Lines.
"""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path


def _names(record) -> tuple[str, str]:
    subj = record.text[record.subj_span[0]:record.subj_span[1]]
    obj = record.text[record.obj_span[0]:record.obj_span[1]]
    return subj, obj


def _line(subj: str, obj: str, relation: str) -> str:
    s, o = subj.split(), obj.split()
    return json.dumps({"token": s + o, "subj_start": 0, "subj_end": len(s) - 1, "obj_start": len(s),
                       "obj_end": len(s) + len(o) - 1, "relation": relation})


def build_probe(infuse_recipe, out: Path, *, train: int = 3000, dev: int = 500, test: int = 1000, seed: int = 0) -> dict:
    """Write ``out/{train,dev,test_infused,test_held_out}.jsonl``; returns the counts (reused when present)."""
    from kadapt.data.formats import read_records
    from kadapt.data.policy import ErrorPolicy
    from kadapt.runs.context import data_seed, read_splits
    from kadapt.runs.recipe import resolve_path

    files = {name: out / f"{name}.jsonl" for name in ("train", "dev", "test_infused", "test_held_out")}
    if all(f.exists() for f in files.values()) and (out / "counts.json").exists():
        return json.loads((out / "counts.json").read_text(encoding="utf-8"))
    splits = read_splits(infuse_recipe.data, data_seed(infuse_recipe), ErrorPolicy("skip"))
    infused, seen_pairs = {}, set()
    for record in splits.train:
        infused.setdefault((record.subj_id, record.obj_id, record.label), _names(record))
    for record in splits.train + splits.dev:
        seen_pairs.add((record.subj_id, record.obj_id))
    held_out = {}
    for record in read_records("lama_trex", resolve_path(infuse_recipe.data.train), ErrorPolicy("skip")):
        if (record.subj_id, record.obj_id) not in seen_pairs:
            held_out.setdefault((record.subj_id, record.obj_id, record.label), _names(record))
    rng = random.Random(seed)
    infused_facts = sorted(infused)
    rng.shuffle(infused_facts)
    test_infused = infused_facts[:test]
    by_label = defaultdict(list)
    for fact in sorted(held_out):
        by_label[fact[2]].append(fact)
    for facts in by_label.values():
        rng.shuffle(facts)
    want = Counter(f[2] for f in test_infused)  # held-out test: the same relation counts as the infused test
    test_held = [f for label, n in sorted(want.items()) for f in by_label[label][:n]]
    used = set(test_held)
    rest = [f for label in sorted(by_label) for f in by_label[label] if f not in used]
    rng.shuffle(rest)
    chosen = {"train": rest[:train], "dev": rest[train:train + dev], "test_infused": test_infused,
              "test_held_out": test_held}
    out.mkdir(parents=True, exist_ok=True)
    for name, facts in chosen.items():
        table = infused if name == "test_infused" else held_out
        files[name].write_text("".join(_line(*table[f], f[2]) + "\n" for f in facts), encoding="utf-8")
    counts = {name: len(facts) for name, facts in chosen.items()}
    counts.update({"infused_facts": len(infused), "held_out_facts": len(held_out),
                   "relations_test": len(want), "test_relation_counts_equal": Counter(f[2] for f in test_held) == want})
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return counts


def _sentence_line(record) -> str:
    """A LAMA T-REx evidence sentence as T-REx-rc JSON (whitespace tokens; spans by character offsets)."""
    tokens, starts, pos = record.text.split(), [], 0
    for token in tokens:
        pos = record.text.index(token, pos)
        starts.append(pos)
        pos += len(token)

    def span(chars: tuple[int, int]) -> tuple[int, int]:
        inside = [i for i, s in enumerate(starts) if s < chars[1] and s + len(tokens[i]) > chars[0]]
        return inside[0], inside[-1]

    (s0, s1), (o0, o1) = span(record.subj_span), span(record.obj_span)
    return json.dumps({"token": tokens, "subj_start": s0, "subj_end": s1, "obj_start": o0, "obj_end": o1,
                       "relation": record.label})


def build_heldout_sentences(infuse_recipe, out: Path, *, train: int = 3000, dev: int = 500, test: int = 1000,
                            seed: int = 0) -> dict:
    """T-REx held-out sentences task: relation classification WITH the sentence, on facts whose entity pair
    is in neither the infusion's train nor dev split (one sentence per fact; facts disjoint across splits)."""
    from kadapt.data.formats import read_records
    from kadapt.data.policy import ErrorPolicy
    from kadapt.runs.context import data_seed, read_splits
    from kadapt.runs.recipe import resolve_path

    files = {name: out / f"{name}.jsonl" for name in ("train", "dev", "test")}
    if all(f.exists() for f in files.values()):
        return json.loads((out / "counts.json").read_text(encoding="utf-8"))
    splits = read_splits(infuse_recipe.data, data_seed(infuse_recipe), ErrorPolicy("skip"))
    seen = {(r.subj_id, r.obj_id) for r in splits.train + splits.dev}
    first = {}
    for record in read_records("lama_trex", resolve_path(infuse_recipe.data.train), ErrorPolicy("skip")):
        key = (record.subj_id, record.obj_id, record.label)
        if (record.subj_id, record.obj_id) not in seen and key not in first and len(record.text.split()) <= 40:
            first[key] = record
    facts = sorted(first)
    random.Random(seed).shuffle(facts)
    chosen = {"train": facts[:train], "dev": facts[train:train + dev], "test": facts[train + dev:train + dev + test]}
    out.mkdir(parents=True, exist_ok=True)
    for name, keys in chosen.items():
        files[name].write_text("".join(_sentence_line(first[k]) + "\n" for k in keys), encoding="utf-8")
    counts = {name: len(keys) for name, keys in chosen.items()}
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n", encoding="utf-8")
    return counts


def heldout_sentences_recipe(folder: Path, backbone: str, overrides: list[str] = ()):
    """The ``trex-held-out`` fine-tune task; ``overrides`` (``--task-set``) apply as to every task recipe."""
    from kadapt.runs.recipe import apply_overrides, recipe_from_dict

    source = f"{folder}/trex-held-out"
    return recipe_from_dict(apply_overrides({
        "kind": "finetune", "name": "trex-held-out",
        "backbone": {"name_or_path": backbone},
        "objective": {"name": "relation_classification"},
        "data": {"format": "trex_rc", "train": str(folder / "train.jsonl"), "dev": str(folder / "dev.jsonl"),
                 "test": str(folder / "test.jsonl"), "max_length": 96, "on_error": "skip"},
        "training": {"epochs": 5, "batch_size": 32, "lr": 1e-2, "weight_decay": 0.01, "warmup_ratio": 0.06},
    }, list(overrides), source), source)


def probe_recipes(folder: Path, backbone: str, overrides: list[str] = ()) -> list:
    """Two fine-tune tasks that differ only in their test file (same train/dev, so the same heads);
    ``overrides`` (``--task-set``) apply as to every task recipe."""
    from kadapt.runs.recipe import apply_overrides, recipe_from_dict

    recipes = []
    for name in ("test_infused", "test_held_out"):
        source = f"{folder}/recall ({name})"
        recipes.append(recipe_from_dict(apply_overrides({
            "kind": "finetune", "name": f"recall-{name.split('_', 1)[1].replace('_', '-')}",
            "backbone": {"name_or_path": backbone},
            "objective": {"name": "relation_classification"},
            "data": {"format": "trex_rc", "train": str(folder / "train.jsonl"), "dev": str(folder / "dev.jsonl"),
                     "test": str(folder / f"{name}.jsonl"), "max_length": 32, "on_error": "skip"},
            "training": {"epochs": 10, "batch_size": 32, "lr": 1e-2, "weight_decay": 0.01, "warmup_ratio": 0.06},
        }, list(overrides), source), source))
    return recipes


def recall_table(rows: list[dict]) -> list[dict]:
    """Per variant: test metric on infused facts − on held-out facts, paired by (head, infusion) seed."""
    by = {}
    for row in rows:
        by[(row["task"], row["variant"], row["infusion_seed"], row["head_seed"])] = row["test"]
    result = []
    for variant in dict.fromkeys(r["variant"] for r in rows if r["task"] == "recall-infused"):
        diffs, infused, held = [], [], []
        for (task, v, inf, head), test in by.items():
            other = by.get(("recall-held-out", v, inf, head))
            if task == "recall-infused" and v == variant and other is not None:
                metric = "accuracy"
                infused.append(test[metric]), held.append(other[metric])
                diffs.append(test[metric] - other[metric])
        if diffs:
            mean = sum(diffs) / len(diffs)
            std = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else 0.0
            result.append({"variant": variant, "runs": len(diffs), "infused": sum(infused) / len(infused),
                           "held_out": sum(held) / len(held), "diff_mean": mean, "diff_std": std,
                           "diff_min": min(diffs), "diff_max": max(diffs)})
    return result
