"""Export the JAKET Table 3 benchmark's pieces for `kadapt finetune` (recipes/finetune/jaket_entity_classification_small.yaml).

From a `benchmarks/jaket_entity_classification.py --out TABLE` folder, write under OUT: WN18RR half B (the
half the infusion never saw) as a KG-BERT folder, its memory rows (half_b_memory.safetensors), the half-A
infused JAKET plug-in (from TABLE/infusion's last checkpoint) and an untrained one, as plug-in folders.

Run:  PYTHONPATH=. python benchmarks/jaket_half_b_export.py --table runs/jaket_table --out runs/jaket_half_b
"""
import argparse
from pathlib import Path

import torch

from kadapt.core.backbone import FrozenBackbone
from kadapt.core.fileio import load_tensors, save_tensors
from kadapt.kg import read_kg
from kadapt.store.plugin_dir import save_plugin
from kadapt.core.family import build_plugin
from kadapt.runs.recipe import default_data_dir, minilm_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="output folder of benchmarks/jaket_entity_classification.py")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table, out = Path(args.table), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = default_data_dir() / "kg_wn18rr"
    graph = read_kg(src)
    half = torch.zeros(graph.num_entities, dtype=torch.bool)
    half[torch.randperm(graph.num_entities, generator=torch.Generator().manual_seed(1234))[: graph.num_entities // 2]] = True
    rows_b = torch.nonzero(~half).flatten()
    keep = {graph.entity_ids[i] for i in rows_b.tolist()}
    kg = out / "wn18rr_half_b"
    kg.mkdir(exist_ok=True)
    (kg / "entities.txt").write_text("".join(graph.entity_ids[i] + "\n" for i in rows_b.tolist()))
    for name in ("entity2text.txt", "entity2category.tsv"):
        lines = [ln for ln in (src / name).read_text().splitlines() if ln.split("\t", 1)[0].strip() in keep]
        (kg / name).write_text("\n".join(lines) + "\n")
    for name in ("relation2text.txt", "relations.txt"):
        if (src / name).exists():
            (kg / name).write_text((src / name).read_text())
    t = graph.triples
    inside = (~half)[t[:, 0]] & (~half)[t[:, 2]]
    (kg / "train.tsv").write_text("".join(f"{graph.entity_ids[h]}\t{graph.relation_ids[r]}\t{graph.entity_ids[tt]}\n"
                                          for h, r, tt in t[inside].tolist()))
    full, _ = load_tensors(table / "memory_full.safetensors")
    save_tensors(out / "half_b_memory.safetensors", {"entities": full["entities"][rows_b].contiguous(),
                                                      "relations": full["relations"]})
    backbone = FrozenBackbone.from_pretrained(minilm_path())
    last = max((table / "infusion" / "checkpoints").glob("step-*"))
    ckpt, _ = load_tensors(last / "trainable.safetensors")
    plugin = build_plugin("jaket", {"name": "jaket_wn18rr_half_a", "description_max_length": 32}, backbone.spec)
    plugin.load_state_dict({k[len("plugin."):]: v for k, v in ckpt.items() if k.startswith("plugin.")}, strict=True)
    save_plugin(plugin, out / "jaket_half_a", backbone.fingerprint)
    torch.manual_seed(0)
    save_plugin(build_plugin("jaket", {"name": "jaket_untrained", "description_max_length": 32}, backbone.spec),
                out / "jaket_untrained", backbone.fingerprint)
    g = read_kg(kg)
    print("half B:", g.num_entities, g.num_triples, sum(c is not None for c in g.entity_categories))


if __name__ == "__main__":
    main()
