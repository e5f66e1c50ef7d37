"""Equivalence of an imported reference K-Adapter checkpoint with the reference computation.

A random-weight RoBERTa-large-shaped backbone (24 layers, hidden 1024, 16 heads, FFN 4096; tiny
vocabulary — no hub downloads here) and a reference-style ``AdapterModel`` with the paper's adapter
(3 adapter layers at 0,11,22, adapter_size 768, 2 transformer layers, 12 heads, FFN 3072;
:mod:`kadapt.testing.kadapter_reference`, random weights) saved as ``pytorch_model.bin`` the way
``fac-adapter.py`` saves, imported with :func:`import_reference_checkpoint`, then both run on the same
backbone hidden states. Writes ``benchmarks/results/kadapter_import.json`` (max |diff| unpadded, and with
padding both against the reference on the padded batch — it attends to padding — and against the
reference run on each row alone).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice python benchmarks/kadapter_import.py --work /tmp/kadapter-import
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "kadapter_import.json"
TEXTS = ["Barack Obama was born in Hawaii and studied at Columbia University in New York .",
         "Marie Curie worked in Paris with Pierre Curie .", "Paris is the capital of France .",
         "The quick brown fox jumps over the lazy dog ."]


def _max_diff(a, b) -> float:
    return float((a - b).abs().max())


def measure(work: Path, seed: int = 0) -> dict:
    import torch

    from kadapt.core.backbone import FrozenBackbone
    from kadapt.plugins.kadapter.reference_io import import_reference_checkpoint
    from kadapt.store.plugin_dir import load_plugin
    from kadapt.testing.kadapter_reference import ReferenceAdapterModel, randomize
    from kadapt.testing.tiny import build_tiny_backbone

    torch.set_num_threads(1)
    if not (work / "backbone" / "config.json").exists():
        build_tiny_backbone(work / "backbone", "roberta", TEXTS * 5, num_layers=24, hidden_size=1024, num_heads=16,
                            intermediate_size=4096, vocab_size=500, max_position_embeddings=130, seed=seed)
    backbone = FrozenBackbone.from_pretrained(work / "backbone")
    reference = randomize(ReferenceAdapterModel(1024, (0, 11, 22), head="factual", labels=40), seed, std=0.02)
    checkpoint = work / "fac-adapter" / "pytorch_model.bin"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), checkpoint)
    started = time.perf_counter()
    plugin_dir = import_reference_checkpoint(checkpoint, backbone, work / "imported", name="factual", overwrite=True)
    seconds = time.perf_counter() - started
    plugin = load_plugin(plugin_dir, backbone).plugin

    def states_of(texts):
        enc = backbone.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            return backbone.model(**enc, output_hidden_states=True).hidden_states, enc["attention_mask"]

    with torch.no_grad():
        unpadded = [states_of([text]) for text in TEXTS]
        diff_unpadded = max(_max_diff(plugin.adapt(dict(enumerate(s)), m), reference.adapter_output(s))
                            for s, m in unpadded)
        scale = max(float(reference.adapter_output(s).abs().max()) for s, _ in unpadded)
        states, mask = states_of(TEXTS)
        ours = plugin.adapt(dict(enumerate(states)), mask)
        theirs = reference.adapter_output(states)
        lengths = mask.sum(1).tolist()
        vs_padded = max(_max_diff(ours[i, :n], theirs[i, :n]) for i, n in enumerate(lengths))
        vs_alone = max(_max_diff(ours[i, :n], reference.adapter_output(unpadded[i][0])[0])
                       for i, n in enumerate(lengths))
    return {
        "written_by": "benchmarks/kadapter_import.py",
        "backbone": "random-weight RoBERTa-large shape (24 layers, hidden 1024, 16 heads, FFN 4096)",
        "adapter": {"adapter_list": [0, 11, 22], "adapter_size": 768, "transformer_layers": 2, "heads": 12,
                    "intermediate": 3072, "parameters": plugin.num_parameters()},
        "inputs": {"sentences": len(TEXTS), "lengths": [int(n) for n in lengths]},
        "import_seconds": round(seconds, 2),
        "max_abs_output": scale,
        "unpadded_max_abs_diff": diff_unpadded,
        "padded_max_abs_diff_vs_reference_padded": vs_padded,
        "padded_max_abs_diff_vs_reference_each_row_alone": vs_alone,
        "dtype": "float32",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/kadapter-import", help="Scratch folder (backbone, checkpoint, plug-in).")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    result = measure(Path(args.work))
    Path(args.results).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
