"""Data preparation and statistics for ``real_data_infusion.py`` (and the benchmarks built on it):
LAMA T-REx split by fact into T-REx-rc JSON, UD EWT subsets, a memoising backbone wrapper, trivial
baselines, bootstrap confidence intervals and timing."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

log = logging.getLogger("bench-real")

FACT_MAX_LEN = 48  # tokens incl. the four markers (chosen on dev, see benchmarks/README.md)
UD_MAX_LEN = 128


# ---------------------------------------------------------------------------------------------- helpers


class Timer:
    """Wall time and process CPU time (all threads) of named stages, in insertion order.

    The CPU time tells how much work a stage was when the machine is shared: on an idle 2-core machine
    wall time is roughly CPU time / (1.5 .. 2).
    """

    def __init__(self):
        self.stages: dict[str, dict] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0, self.c0 = time.perf_counter(), time.process_time()
                log.info("=== %s ...", name)
                return self

            def __exit__(self, *exc):
                wall, cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
                timer.stages[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
                log.info("=== %s done in %.1f s wall, %.1f s CPU", name, wall, cpu)
                return False

        return _Ctx()


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def fresh_dir(path: Path) -> Path:
    """Empty ``path`` (a folder this script owns) so a re-run never resumes or mixes old files."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def prf_from_pairs(gold: list[str], pred: list[str]) -> dict:
    """Accuracy, micro-F1 (= accuracy: single-label, no no-relation class) and macro-F1 over the
    labels present in gold or predictions (scikit-learn's default label set)."""
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred))
    labels = sorted(set(gold) | set(pred))
    tp, gp, pp = Counter(), Counter(gold), Counter(pred)
    for g, p in zip(gold, pred):
        if g == p:
            tp[g] += 1
    f1s = []
    for label in labels:
        prec = tp[label] / pp[label] if pp[label] else 0.0
        rec = tp[label] / gp[label] if gp[label] else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    acc = correct / n if n else 0.0
    return {"accuracy": acc, "micro_f1": acc, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0, "n": n}


def paired_bootstrap(gold: list, pred_a: list, pred_b: list, resamples: int = 2000, seed: int = 0) -> dict:
    """Accuracy of B minus accuracy of A (points), with a 95% paired-bootstrap interval over examples
    and the fraction of resamples where B does not beat A."""
    import numpy as np

    a = np.array([g == p for g, p in zip(gold, pred_a)], dtype=float)
    b = np.array([g == p for g, p in zip(gold, pred_b)], dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(resamples, len(a)))
    diffs = 100 * (b[idx].mean(1) - a[idx].mean(1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"points": round(float(100 * (b.mean() - a.mean())), 2), "ci95": [round(float(lo), 2), round(float(hi), 2)],
            "p_not_better": float((diffs <= 0).mean()), "resamples": resamples}


def read_predictions(path: Path) -> tuple[list, list]:
    gold, pred = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            gold.append(row["gold"])
            pred.append(row["prediction"])
    return gold, pred


# ---------------------------------------------------------------------------------------------- backbone cache


def make_cached_backbone(backbone, layers: list[int]):
    """The same frozen backbone, with its hidden states memoised per input sequence.

    kadapt re-runs the frozen backbone for every batch of every epoch and every run (DESIGN §8 asks for
    a cache; the library has none yet). The backbone is frozen and deterministic, so its states are a
    pure function of the token ids: this subclass stores, per unpadded sequence, the states at ``layers``
    (float32, so nothing is rounded) and re-pads them. Positions past a sequence's length are zeros
    instead of the states of ``[PAD]`` inputs; every kadapt head ignores them (the K-Adapter masks padded
    keys, relation heads read the marker positions, the dependency head has no targets there).
    ``--no-cache`` runs the plain library path instead. Identity (fingerprint) is unchanged.
    """
    import torch

    from kadapt import FrozenBackbone

    class CachedBackbone(FrozenBackbone):
        def __init__(self):
            super().__init__(backbone.model, backbone.tokenizer, name=backbone.name)
            self._fingerprint = backbone.fingerprint
            self.cache_layers = sorted(set(layers) | {self.spec.num_layers})
            self.store: dict[bytes, torch.Tensor] = {}
            self.hits = self.misses = 0

        def clear(self) -> None:
            self.store.clear()

        def encode(self, input_ids, attention_mask, layers, token_type_ids=None):
            wanted = self._check_layers(layers)
            lengths = attention_mask.sum(1).tolist()
            right_padded = all(bool(attention_mask[i, :n].all()) for i, n in enumerate(lengths))
            if token_type_ids is not None or not set(wanted) <= set(self.cache_layers) or not right_padded:
                return super().encode(input_ids, attention_mask, wanted, token_type_ids)
            ids = input_ids.cpu()
            keys = [ids[i, :n].numpy().tobytes() for i, n in enumerate(lengths)]
            missing = [i for i, k in enumerate(keys) if k not in self.store]
            self.hits += len(keys) - len(missing)
            self.misses += len(missing)
            if missing:
                width = max(lengths[i] for i in missing)
                states = super().encode(input_ids[missing, :width], attention_mask[missing, :width], self.cache_layers)
                for j, i in enumerate(missing):
                    n = lengths[i]
                    self.store[keys[i]] = torch.stack([states[l][j, :n] for l in self.cache_layers]).cpu().clone()
            batch, seq = input_ids.shape
            hidden = self.spec.hidden_size
            out = {l: torch.zeros(batch, seq, hidden, dtype=self.dtype) for l in wanted}
            slot = {l: self.cache_layers.index(l) for l in wanted}
            for i, key in enumerate(keys):
                cached = self.store[key]
                for l in wanted:
                    out[l][i, :lengths[i]] = cached[slot[l]]
            return {l: t.to(input_ids.device) for l, t in out.items()}

    return CachedBackbone()


def check_cache(plain, cached, texts: list[str]) -> float:
    """Max |difference| between cached and plain states on one padded batch (asserted tiny)."""

    enc = plain.tokenizer(texts, padding=True, return_tensors="pt")
    layers = cached.cache_layers
    ref = plain.encode(enc["input_ids"], enc["attention_mask"], layers)
    cached.encode(enc["input_ids"][:1], enc["attention_mask"][:1], layers)  # one row cached alone first
    got = cached.encode(enc["input_ids"], enc["attention_mask"], layers)
    mask = enc["attention_mask"].bool()
    diff = max(float((ref[l] - got[l])[mask].abs().max()) for l in layers)
    cached.clear()
    cached.hits = cached.misses = 0
    if diff > 1e-3:
        raise SystemExit(f"backbone cache differs from the plain backbone by {diff}")
    return diff


# ---------------------------------------------------------------------------------------------- T-REx data


def _tokens_of(text: str, subj: tuple[int, int], obj: tuple[int, int]) -> dict:
    """A T-REx-rc record (whitespace tokens; entity spans are token-aligned by splitting at their
    character boundaries, so ``Paris,`` with object ``Paris`` becomes ``Paris`` ``,``)."""
    spans = sorted([("subj", subj), ("obj", obj)], key=lambda x: x[1][0])
    tokens: list[str] = []
    out: dict = {}
    pos = 0
    for name, (start, end) in spans:
        tokens.extend(text[pos:start].split())
        first = len(tokens)
        tokens.extend(text[start:end].split())
        out[f"{name}_start"], out[f"{name}_end"] = first, len(tokens) - 1
        pos = end
    tokens.extend(text[pos:].split())
    return {"token": tokens, **out}


def build_trex_splits(trex_dir: Path, tokenizer, sizes: dict, seed: int, out_dir: Path) -> dict:
    """Read LAMA T-REx with kadapt's reader, split by fact, dedupe, filter, sample, write T-REx-rc JSON."""
    from kadapt.data.policy import ErrorPolicy
    from kadapt.data.relations import read_lama_trex_dir

    policy = ErrorPolicy("skip", max_warnings=0)
    records = list(read_lama_trex_dir(trex_dir, policy=policy))
    stats: dict = {"evidences_read": len(records), "evidences_skipped_by_reader": policy.summary()}

    def fact_of(r) -> str:  # "DIR/P19.jsonl.gz:12#k" -> "P19.jsonl.gz:12" (one line = one fact; no DIR,
        return os.path.basename(r.source.rsplit("#", 1)[0])  # so the split does not depend on the data path)

    # Facts sharing the subject/object surface pair go to the same split (union-find).
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in records:
        pair = ("pair", r.text[slice(*r.subj_span)].lower(), r.text[slice(*r.obj_span)].lower())
        parent[find(("fact", fact_of(r)))] = find(pair)
    groups = sorted({find(("fact", fact_of(r))) for r in records}, key=lambda g: stable_hash(repr(g)))
    random.Random(seed).shuffle(groups)
    n = len(groups)
    split_of_group = {g: ("train" if i < 0.8 * n else "dev" if i < 0.9 * n else "test") for i, g in enumerate(groups)}
    stats["fact_groups"] = {"total": n, **Counter(split_of_group.values())}
    stats["facts"] = len({fact_of(r) for r in records})

    # Identical (sentence, spans) with two different relations are ambiguous: drop them everywhere.
    labels_of = defaultdict(set)
    for r in records:
        labels_of[(r.text, r.subj_span, r.obj_span)].add(r.label)
    ambiguous = {k for k, v in labels_of.items() if len(v) > 1}
    stats["ambiguous_examples_dropped"] = sum((r.text, r.subj_span, r.obj_span) in ambiguous for r in records)

    # Length of the text exactly as the trex_rc reader will rebuild it (tokens joined by spaces).
    def joined(r) -> str:
        return " ".join(_tokens_of(r.text, r.subj_span, r.obj_span)["token"])

    texts = sorted({joined(r) for r in records})
    n_tokens = {}
    for i in range(0, len(texts), 2048):
        chunk = texts[i:i + 2048]
        for text, ids in zip(chunk, tokenizer(chunk, add_special_tokens=True, truncation=True,
                                               max_length=FACT_MAX_LEN + 1)["input_ids"]):
            n_tokens[text] = len(ids)
    pools: dict[str, dict[str, list]] = {"train": defaultdict(list), "dev": defaultdict(list), "test": defaultdict(list)}
    seen = set()
    too_long = duplicates = 0
    for r in records:
        key = (r.text, r.subj_span, r.obj_span)
        if key in ambiguous:
            continue
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        # +4 marker tokens: keep sentences whose marked form fits max_length (no entity cut off).
        if n_tokens[joined(r)] + 4 > FACT_MAX_LEN:  # + the four @ / # marker tokens
            too_long += 1
            continue
        split = split_of_group[find(("fact", fact_of(r)))]
        pools[split][fact_of(r)].append(r)
    stats["duplicates_dropped"] = duplicates
    stats["too_long_dropped"] = too_long

    rng = random.Random(seed + 1)
    chosen: dict[str, list] = {}
    train_labels: set = set()
    for split in ("train", "dev", "test"):
        per_fact = sizes["train_per_fact"] if split == "train" else 1
        candidates = []
        for fact in sorted(pools[split]):
            evid = list(pools[split][fact])
            rng.shuffle(evid)
            candidates.extend(evid[:per_fact])
        if split != "train":
            # A held-out sentence must not occur in train (with other markers) nor in dev, and its
            # relation must be one the head was trained on.
            before = len(candidates)
            earlier = {r.text for s in chosen for r in chosen[s]}
            candidates = [r for r in candidates if r.text not in earlier and r.label in train_labels]
            stats[f"{split}_dropped_seen_text_or_label"] = before - len(candidates)
        rng.shuffle(candidates)
        chosen[split] = candidates[:sizes[f"fact_{split}"]]
        stats[f"{split}_pool"] = len(candidates)
        if split == "train":
            train_labels = {r.label for r in chosen["train"]}

    paths = {}
    for split, recs in chosen.items():
        rows = [{**_tokens_of(r.text, r.subj_span, r.obj_span), "relation": r.label,
                 "origin": os.path.basename(r.source)} for r in recs]
        if split != "train":  # evaluation order does not matter: sort by length, batches pad less
            rows.sort(key=lambda row: len(row["token"]))
        paths[split] = out_dir / f"trex_rc_{split}.json"
        paths[split].write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        stats[f"{split}_examples"] = len(rows)
        stats[f"{split}_facts"] = len({row["origin"].rsplit("#", 1)[0] for row in rows})
        stats[f"{split}_relations"] = len({row["relation"] for row in rows})
    # Leakage checks (asserted, reported).
    facts = {s: {fact_of(r) for r in recs} for s, recs in chosen.items()}
    texts = {s: {r.text for r in recs} for s, recs in chosen.items()}
    assert not (facts["train"] & facts["dev"]) and not (facts["train"] & facts["test"]) and not (facts["dev"] & facts["test"])
    assert not (texts["train"] & texts["dev"]) and not (texts["train"] & texts["test"]) and not (texts["dev"] & texts["test"])
    stats["label_counts_train"] = dict(Counter(r.label for r in chosen["train"]).most_common())
    stats["label_counts_test"] = dict(Counter(r.label for r in chosen["test"]).most_common())
    return {"paths": paths, "stats": stats, "records": chosen}


def relation_baselines(train_labels: list[str], test_labels: list[str]) -> dict:
    labels = sorted(set(train_labels))
    k = len(labels)
    majority = Counter(train_labels).most_common(1)[0][0]
    maj = prf_from_pairs(test_labels, [majority] * len(test_labels))
    # Uniform random guess over the k training labels (expected values): accuracy 1/k; class c with
    # test prior p_c has precision p_c and recall 1/k.
    prior = Counter(test_labels)
    n = len(test_labels)
    f1 = []
    for label in sorted(set(labels) | set(prior)):
        p = prior[label] / n
        r = 1 / k if label in labels else 0.0
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    chance = {"accuracy": 1 / k, "micro_f1": 1 / k, "macro_f1": sum(f1) / len(f1), "n": n}
    return {"majority": {**maj, "label": majority}, "chance": chance}


# ---------------------------------------------------------------------------------------------- UD data


def _conllu_blocks(path: Path) -> list[str]:
    """Raw sentence blocks of a CoNLL-U file (comments + token lines), in file order."""
    text = path.read_text(encoding="utf-8")
    return [b.strip("\n") for b in text.split("\n\n") if b.strip()]


def build_ud_splits(ud_dir: Path, tokenizer, sizes: dict, seed: int, out_dir: Path) -> dict:
    """Seeded subset of EWT train (+ optional dev/test subsets), written as CoNLL-U files and read back
    through kadapt's ``conllu`` reader. Eval files are sorted by length (fewer pad tokens per batch)."""
    from kadapt.data.formats import read_records

    stats: dict = {}
    paths: dict = {}
    records: dict = {}
    for split in ("train", "dev", "test"):
        src = ud_dir / f"en_ewt-ud-{split}.conllu"
        recs = read_records("conllu", src)
        blocks = _conllu_blocks(src)
        if len(blocks) != len(recs):
            raise SystemExit(f"{src}: {len(blocks)} sentence blocks but the reader returned {len(recs)} sentences")
        want = sizes[f"ud_{split}"]
        order = list(range(len(recs)))
        if want is not None and want < len(recs):
            random.Random(f"{seed}-{split}").shuffle(order)
            order = sorted(order[:want])
        if split != "train":
            lengths = {i: len(tokenizer(" ".join(recs[i].words))["input_ids"]) for i in order}
            order.sort(key=lambda i: lengths[i])
        paths[split] = out_dir / f"ewt_{split}.conllu"
        paths[split].write_text("\n\n".join(blocks[i] for i in order) + "\n\n", encoding="utf-8")
        records[split] = [recs[i] for i in order]
        stats[f"{split}_sentences"] = len(order)
        stats[f"{split}_words"] = sum(len(recs[i].words) for i in order)
        stats[f"{split}_of"] = len(recs)
    return {"paths": paths, "stats": stats, "records": records}


def attach_baselines(records: list) -> dict:
    """UAS of attaching every word to its left / right neighbour (first/last word -> root)."""
    total = left = right = 0
    for ex in records:
        n = len(ex.words)
        for i, head in enumerate(ex.heads, start=1):
            total += 1
            left += head == i - 1
            right += head == (i + 1 if i < n else 0)
    return {"left": left / total, "right": right / total, "words": total}
