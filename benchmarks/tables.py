"""Measured-number tables of the Markdown docs, rendered from ``benchmarks/results/<name>.json``.

A table in ``README.md`` / ``benchmarks/README.md`` that shows measured numbers sits between

    <!-- table: NAME -->
    | ... |
    <!-- /table -->

and is the output of ``RENDERERS[NAME]`` on ``benchmarks/results/<source>.json`` (written by the
benchmark script named in the JSON). ``python benchmarks/tables.py`` re-renders every marked table in
place; ``--check`` only compares and exits 1 naming each table that differs (the test suite runs the
same check, so a hand-edited number fails it). Both name every Markdown table with a digit that sits
outside the markers and is not one of the descriptive tables in ``DESCRIPTIVE_TABLES`` (exit 1).
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from pathlib import Path

from knowledge_tables import (fact_recall, knowledge_effect, knowledge_effect_cache, knowledge_effect_headline,
                              knowledge_effect_time, knowledge_effect_verdict)
from table_format import md_rows as _rows

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOCS = (REPO / "README.md", REPO / "benchmarks" / "README.md")
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def quickstart(data: dict) -> str:
    combos = ["bare", "+F", "+L", "+F+L"]
    rows = [[f"{task} ({data['metrics'][task]})"] + [f"{100 * data['results'][task][c]['test']:.1f}" for c in combos]
            for task in data["results"]]
    return _rows(["task (metric)", *combos], ["---"] + ["---:"] * 4, rows)


def _trelm_lama(data: dict, suffix: str) -> str:
    rows = []
    for kind, cell in data["summary_p_at_1_percent"].items():
        values = [cell.get(f"{k}{suffix}") for k in ("before_infused", "after_infused", "before_held_out", "after_held_out")]
        rows.append([kind, str(cell["relations"])] + ["—" if v is None else f"{v:.2f}" for v in values])
    header = ["P@1 (%)", "relations", "before, infused facts", "after, infused facts", "before, held-out",
              "after, held-out"]
    return _rows(header, ["---"] + ["---:"] * 5, rows)


def trelm_lama(data: dict) -> str:
    return _trelm_lama(data, "")


def trelm_lama_typed(data: dict) -> str:
    return _trelm_lama(data, "_typed")


def _per_seed(values, fmt: str) -> str:
    return " / ".join("—" if v is None else format(v, fmt) for v in values)


def trelm_efficiency(data: dict) -> str:
    arms = [data["arms"][name] for name in ("mask", "dense", "full")]
    initial = data["initial_heldout_loss"]
    rows = [
        ["trainable FFN parameters"] + [f"{a['trainable_ffn_parameters']:,}" for a in arms],
        ["mean step, wall s (attribution included)"] + [f"{a['mean_step_wall_s']:.3f}" for a in arms],
        ["mean step, CPU s"] + [f"{a['mean_step_cpu_s']:.3f}" for a in arms],
        [f"total wall s per seed ({data['steps']} steps)"] + [_per_seed(a["total_wall_s_per_seed"], ".1f") for a in arms],
        ["total CPU s per seed"] + [_per_seed(a["total_cpu_s_per_seed"], ".1f") for a in arms],
        ["final held-out loss per seed"] + [_per_seed(a["final_heldout_per_seed"], ".3f") for a in arms],
    ]
    for fraction in ("0.65", "0.6"):
        rows.append([f"wall s to {fraction} × initial ({float(fraction) * initial:.2f}) per seed"]
                    + [_per_seed(a["wall_s_to_target_per_seed"][fraction], ".1f") for a in arms])
    return _rows(["", "mask", "dense delta", "full FT of the FFN weights"], ["---", "---:", "---:", "---:"], rows)


def trelm_routing_agreement(data: dict) -> str:
    per_layer, seconds = data["mean_overlap_with_ig_m20_per_layer"], data["mean_attribution_seconds"]
    layers = len(next(iter(per_layer.values())))
    shown = [0, 1, layers - 1]
    labels = {"ig_m20": "IG m = 20 (paper)", "ig_m5": "IG m = 5", "ig_m2": "IG m = 2", "grad_x_act": "`grad_x_act`"}
    rows = [[labels["ig_m20"], "1"] + ["1"] * len(shown) + [f"{seconds['ig_m20']:.2f}"]]
    for mode in ("ig_m5", "ig_m2", "grad_x_act"):
        rows.append([labels[mode], f"{data['mean_overlap_with_ig_m20'][mode]:.3f}"]
                    + [f"{per_layer[mode][layer]:.3f}" for layer in shown] + [f"{seconds[mode]:.2f}"])
    header = ["mode", "mean overlap with IG m=20", *[f"layer {layer}" for layer in shown], "seconds per attribution"]
    return _rows(header, ["---"] + ["---:"] * (len(shown) + 2), rows)


def _mean_std(cell: dict, fmt: str = ".2f") -> str:
    return f"{format(cell['mean'], fmt)} ± {format(cell['std'], fmt)}"


def trelm_quality_lama(data: dict) -> str:
    """LAMA T-REx P@1 (%), mean over relations, mean ± std over seeds, per arm and relation type."""
    labels = {"before": "before infusion", "inject_off": "after, injection off", "inject_on": "after, injection on"}
    rows = []
    for arm, label in labels.items():
        summary = data["lama_p_at_1_percent"].get(arm)
        if summary is None:
            continue
        for kind in ("all", "N-1", "N-M"):
            cell = summary[kind]
            rows.append([label, f"{kind} ({cell['relations']})", str(len(summary["seeds"]))]
                        + [_mean_std(cell[key]) for key in ("infused", "held_out", "infused_typed", "held_out_typed")])
    majority = data["baselines"]["lama_majority_object_percent"]["all"]
    rows.append(["majority object of the relation (no model)", f"all ({majority['relations']})", "—"]
                + [f"{majority[key]:.2f}" for key in ("infused", "held_out", "infused_typed", "held_out_typed")])
    header = ["model", "relations", "seeds", "P@1 infused facts", "P@1 held-out facts", "typed P@1 infused",
              "typed P@1 held-out"]
    return _rows(header, ["---", "---", "---:"] + ["---:"] * 4, rows)


def trelm_quality_rc(data: dict) -> str:
    """Relation classification test accuracy (%) on held-out T-REx facts, mean ± std and per seed."""
    labels = {"bare": "bare MiniLM", "untrained_mask": "untrained mask (same shape, never infused)",
              "infused_mask": "infused mask (injection on)", "infused_mask_off": "infused mask (injection off)"}
    rows = []
    for row, label in labels.items():
        cell = data["relation_classification_test_accuracy"].get(row)
        if cell is None:
            continue
        percent = {"mean": 100 * cell["mean"], "std": 100 * cell["std"]}
        rows.append([label, str(len(cell["seeds"])), _mean_std(percent, ".1f"),
                     " / ".join(f"{100 * v:.1f}" for v in cell["per_seed"])])
    majority = data["baselines"]["rc_majority_relation"]
    rows.append([f"majority relation ({majority['relation']}, no model)", "—",
                 f"{100 * majority['test_accuracy']:.1f}", "—"])
    return _rows(["model", "seeds", "test accuracy (%)", "per seed"], ["---", "---:", "---:", "---:"], rows)


def xlmk_mpararel(data: dict) -> str:
    langs = data["settings"]["languages"].split(",")
    columns = ("majority", "before:features", "after:features", "after:projection")
    rows = [[lang] + [f"{data[f'{lang}/{c}']:.3f}" for c in columns] for lang in langs]
    return _rows(["language", "majority object (train prior)", "before: features", "after: features",
                  "after: projection"], ["---"] * 5, rows)


def ud_pos_multilingual(data: dict) -> str:
    seeds = [str(s) for s in data["seeds"]]
    languages = list(data["per_seed"][seeds[0]]["dev_per_language"])
    rows = [[f"seed {s}"] + [f"{data['per_seed'][s]['dev_per_language'][lang]:.3f}" for lang in languages]
            + [f"{data['per_seed'][s]['dev_average']:.3f}", f"{data['per_seed'][s]['test']:.3f}"] for s in seeds]
    mean = lambda key: f"{data[key]['mean']:.3f} ± {data[key]['std']:.3f}"  # noqa: E731
    rows.append(["mean ± std"] + [""] * len(languages) + [mean("dev_average"), mean("test")])
    header = ["run", *[f"dev {lang.split('-')[0]}" for lang in languages], "dev average (selection)", "test en"]
    return _rows(header, ["---"] + ["---:"] * (len(languages) + 2), rows)


def raw_text_uas(data: dict) -> str:
    rows = [[name, row["train_format"], f"{row['dev_uas']:.3f}", f"{row['seconds']:.0f}"] for name, row in data["rows"].items()]
    return _rows(["linguistic plug-in infused from", "data.format", "dev UAS (EWT gold trees)", "seconds"],
                 ["---", "---", "---:", "---:"], rows)


def kadapter_import(data: dict) -> str:
    rows = [["no padding (each sentence alone)", "reference on the same input", f"{data['unpadded_max_abs_diff']:.1e}"],
            ["padded batch", "reference on the padded batch (it attends to padding)",
             f"{data['padded_max_abs_diff_vs_reference_padded']:.1e}"],
            ["padded batch", "reference on each row alone", f"{data['padded_max_abs_diff_vs_reference_each_row_alone']:.1e}"]]
    return _rows(["kadapt input", "compared with", "max abs diff (fp32)"], ["---", "---", "---:"], rows)


def _jaket_mean_std(row: dict | None) -> str:
    return "—" if not row else f"{100 * row['mean']:.1f} ± {100 * row['std']:.1f}"


def _jaket_coverage(row: dict | None) -> str:
    cov = [r["linking"]["test"] for r in (row or {}).get("runs", []) if (r.get("linking") or {}).get("test")]
    if not cov:
        return "—"
    return "/".join(f"{100 * sum(c[k] for c in cov) / len(cov):.0f}" for k in ("any_linked", "all_linked"))


def jaket_text(data: dict) -> str:
    """bare / untrained / infused JAKET per task (test accuracy %, mean ± sample std over seeds); FewRel's
    test linking coverage (% of pair rows with >= 1 / all 4 entities linked) beside it."""
    tasks = data["tasks"]
    ec = sorted((k for k in tasks if k.startswith("ec@")), key=lambda k: -float(k[3:]))
    columns = [("rc", "(a) RC, held-out T-REx facts"), ("fewrel", "(b) FewRel 5-way 1-shot")]
    rows = []
    for model in ("bare", "untrained JAKET", "infused JAKET"):
        cells = [_jaket_mean_std(tasks.get(key, {}).get("rows", {}).get(model)) for key, _ in columns]
        cells.append(_jaket_coverage(tasks.get("fewrel", {}).get("rows", {}).get(model)))
        cells += [_jaket_mean_std(tasks[key]["rows"].get(model)) for key in ec]
        seeds = {len(t["rows"][model]["runs"]) for t in tasks.values() if model in t["rows"]}
        rows.append([model] + cells + ["/".join(str(n) for n in sorted(seeds)) or "0"])
    header = ["model", *[title for _, title in columns], "(b) coverage ≥1/all (%)",
              *[f"(c) KG entity classification, {100 * tasks[k]['train_fraction']:g}% train" for k in ec], "seeds"]
    return _rows(header, ["---"] + ["---:"] * (len(header) - 1), rows)


def jaket_linking(data: dict) -> str:
    """Linking coverage (% of instances with >= 1 / both entities linked) by reader ids, by the dictionary
    linker alone and by both (the fine-tuning default), and the linker's P / R / F1 on gold mentions."""
    rows = []
    for name, part in data["data"].items():
        cov, gold = part["coverage"], part["linker_vs_gold"]
        scores = [f"{100 * gold[k]:.1f}" for k in ("precision", "recall", "f1")] + [f"{gold['gold_mentions']:,}"] \
            if gold else ["—"] * 4  # no gold ids (Open Entity): nothing to score the linker against
        rows.append([name, f"{part['instances']:,}"]
                    + [f"{100 * cov[k]['any']:.1f} / {100 * cov[k]['both']:.1f}" for k in ("ids", "linker", "ids+linker")]
                    + scores)
    header = ["data set", "instances", "ids: ≥1 / both", "linker: ≥1 / both", "ids+linker: ≥1 / both",
              "linker P", "linker R", "linker F1", "gold mentions"]
    return _rows(header, ["---"] + ["---:"] * 8, rows)


#: the autograd passes of benchmarks/gradient_checkpointing.py (and gpu_check.py), with their table names
CHECKPOINTED_PASSES = {"backbone_full": "`finetune.backbone: full` (whole-model pass)",
                       "jaket_lm2": "JAKET LM2 re-entry (`run_layers` upper half)",
                       "trelm_attribution": "TRELM attribution (IG, m = 20 copies)"}


def gradient_checkpointing(data: dict) -> str:
    rows = [[CHECKPOINTED_PASSES.get(case, case), f"{row['sequences_per_pass']} × {data['sequence_length']}",
             f"{row['off']['autograd_extra_rss_mb']:.0f}", f"{row['on']['autograd_extra_rss_mb']:.0f}",
             f"{100 * row['memory_saved_fraction']:.0f}%", f"{row['off']['cpu_seconds_per_pass']:.2f}",
             f"{row['on']['cpu_seconds_per_pass']:.2f}", f"{row['cpu_time_ratio']:.2f}×",
             "yes" if row["same_gradients"] else "NO"] for case, row in data["results"].items()]
    header = ["autograd pass", "sequences × tokens", "extra peak RSS off (MB)", "on (MB)", "memory saved",
              "CPU s/pass off", "on", "time", "same gradients"]
    return _rows(header, ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---"], rows)


def _caption(data: dict, *extra: str) -> str:
    """One italic line under a timing table: where it was measured (the machine note of the JSON)."""
    machine = data.get("machine", {})
    load = machine.get("loadavg")
    parts = [f"{machine.get('cpu_count', '?')} CPU cores" + (", no GPU" if machine.get("cuda") is None else f", {machine['cuda']}"),
             *([f"1-min load average {load[0]:.1f} when the file was written"] if load else []), *extra]
    return "\n*" + "; ".join(parts) + f"; `{data['written_by']}`.*\n"


def fallback_cost(data: dict) -> str:
    s = data["seconds"]
    rows = [["0 and 6 (lower half)", f"{1000 * s['layered_states_0_6']:.0f}", f"{1000 * s['fallback_states_0_6']:.0f}",
             f"{data['fallback_over_layered_lower_half']:.2f}×"],
            ["0, 6 and 12 (every layer)", f"{1000 * s['layered_states_0_6_12']:.0f}",
             f"{1000 * s['fallback_states_0_6_12']:.0f}", f"{data['fallback_over_layered_all_layers']:.2f}×"]]
    settings = data["settings"]
    table = _rows(["hidden states read", "layered path, ms", "full-forward fallback, ms", "fallback / layered"],
                  ["---", "---:", "---:", "---:"], rows)
    return table + _caption(data, f"median of {settings['repeats']}",
                            f"the one-off layered self-check took {1000 * s['self_check_once']:.0f} ms")


def infusion_step(data: dict) -> str:
    names = {"reference_fp32": "reference style (HF forward, all hidden states), fp32",
             "kadapt_fp32": "kadapt selective pass, fp32", "reference_bf16": "reference, bf16 autocast",
             "kadapt_bf16": "kadapt, bf16 autocast"}
    clock = "CPU" if data["device"] == "cpu" else "wall"
    rows = [[label, f"{data[key]['step_s']:.3f}", f"{data[key]['wall_step_s']:.3f}", f"{data[key]['tokens_per_s']:.0f}",
             f"{data[key]['flops_fraction']:.2f}"] for key, label in names.items()]
    rows += [[f"reference ÷ kadapt, {clock} s/step, fp32 / bf16",
              f"{data['kadapt_vs_reference_fp32']:.2f} / {data['kadapt_vs_reference_bf16']:.2f}", "", "", ""],
             [f"kadapt fp32 ÷ kadapt bf16, {clock} s/step", f"{data['bf16_vs_fp32_kadapt']:.2f}", "", "", ""]]
    header = ["mode", f"{clock} s/step", "wall s/step", f"tokens per {clock} s",
              f"fraction of the measured matmul peak (fp32 {data['matmul_tflops_fp32']:.3f}, "
              f"bf16 {data['matmul_tflops_bf16']:.3f} TFLOP/s)"]
    settings = data["settings"]
    return _rows(header, ["---"] + ["---:"] * 4, rows) + _caption(
        data, f"torch threads: {settings['threads']}",
        f"{settings['steps']} timed steps per mode after 2 warm-up steps, modes one after the other")


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _gain(test: dict) -> str:
    gain = test.get("accuracy_gain_vs_probe")
    return "" if not gain else f" ({gain['points']:+.1f} [{gain['ci95'][0]:+.1f}, {gain['ci95'][1]:+.1f}] vs probe)"


def real_data_infusion_quick(data: dict) -> str:
    fact, ling = data["factual"]["rows"], data["linguistic"]["rows"]
    pairs = [("majority class / attach to next word", "majority class", "attach to next word"),
             ("chance / attach to previous word", "chance (uniform)", "attach to previous word"),
             ("backbone probe (linear head)", "backbone probe (linear head)", "backbone probe (linear head)"),
             ("K-Adapter infused (infusion head)", "K-Adapter infused (infusion head)", "K-Adapter infused (infusion head)"),
             ("K-Adapter plug-in + fresh head", "K-Adapter plug-in + fresh head (finetune)", None)]
    rows = []
    for label, f_name, l_name in pairs:
        f, l_row = fact.get(f_name, {}), ling.get(l_name, {}) if l_name else {}
        test = f.get("test", {})
        rows.append([label, _pct(f.get("dev", {}).get("accuracy")), _pct(test.get("accuracy")) + _gain(test),
                     _pct(test.get("macro_f1")), _pct(l_row.get("dev", {}).get("uas")),
                     _pct(l_row.get("test", {}).get("uas"))])
    header = ["model", "factual dev acc", "factual test acc", "factual test macro-F1", "UD dev UAS", "UD test UAS"]
    return _rows(header, ["---"] + ["---:"] * 5, rows)


def real_data_time(data: dict) -> str:
    timings = data["timings"]
    rows = [[stage, f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}"] for stage, t in timings.items()]
    rows.append(["**total**", f"**{data['settings']['total_seconds']:.1f}**",
                 f"{sum(t['cpu_s'] for t in timings.values()):.1f}"])
    return _rows(["stage", "wall s", "CPU s"], ["---", "---:", "---:"], rows) + _caption(
        data, f"torch threads: {data['settings']['threads']}")


def issue7_cache(data: dict) -> str:
    f = data["figures"]
    rows = [["infusion step CPU s: reference / uncached / cached", " / ".join(
                f"{f[f'infusion_{m}_step_cpu_s']:.3f}" for m in ("reference", "uncached", "cached"))],
            ["infusion step wall s: reference / uncached / cached", " / ".join(
                f"{f[f'infusion_{m}_step_wall_s']:.3f}" for m in ("reference", "uncached", "cached"))]]
    for key in ("infusion_cached_vs_reference", "infusion_uncached_vs_reference", "infusion_cached_vs_uncached",
                "two_plugins_one_pass_vs_separate", "finetune_shared_pass_vs_separate"):
        rows.append([f"`{key}`", f"**{f[key]:.2f}**"])
    rows += [["matmul fp32, 1024², 1 thread (CPU time) / cached step", f"{f['matmul_gflops_fp32']:.1f} / "
              f"{f['cached_step_gflops']:.1f} GFLOP/s"],
             ["`cached_step_flops_fraction`", f"**{f['cached_step_flops_fraction']:.2f}**"],
             ["cache build (backbone pass + write) per 64-token example", f"{f['cache_build_s_per_example']:.2f} s"],
             ["padding share, random order / length-bucketed (5,000 log-normal lengths, batch 32)",
              f"{100 * f['padding_fraction_random']:.1f}% / {100 * f['padding_fraction_bucketed']:.1f}%"]]
    fresh = [(bench, names) for bench, names in (("infusion", ("reference", "uncached", "cached")),
                                                  ("two_plugins", ("separate", "joint")))
             if f"fresh_process_peak_rss_mb_{bench}_{names[0]}" in f]
    for bench, names in fresh:
        label = "infusion reference / uncached / cached" if bench == "infusion" else "F+L infusion separate / joint"
        rows.append([f"peak RSS, each mode alone in a fresh process (MB): {label}",
                     " / ".join(f"{f[f'fresh_process_peak_rss_mb_{bench}_{n}']:.0f}" for n in names)])
    settings = data["settings"]
    return _rows(["figure", "value"], ["---", "---:"], rows) + _caption(
        data, f"batch {settings['shape']['batch']} × {settings['shape']['seq']}, {settings['repeats']} repeats × "
              f"{settings['steps_per_repeat']} steps", f"{f['benchmark_seconds']:.0f} s inside the script")


def issue7_cache_memory(data: dict) -> str:
    f = data["figures"]
    modes = [("infusion", "reference"), ("infusion", "uncached"), ("infusion", "cached"), ("two_plugins", "separate"),
             ("two_plugins", "joint"), ("finetune", "per_plugin"), ("finetune", "shared")]
    labels = {"infusion": "infusion", "two_plugins": "F+L infusion", "finetune": "fine-tuning over [backbone; F; L]"}
    rows = [[f"{labels[bench]}: {mode.replace('_', ' ')}", f"{f[f'peak_rss_mb_{bench}_{mode}']:.0f}",
             f"{f[f'step_rss_mb_{bench}_{mode}']:.1f}"] for bench, mode in modes]
    return _rows(["mode", "peak RSS of the process, MB", "added above the mode's starting RSS, MB"],
                 ["---", "---:", "---:"], rows)


def jaket_memory_speed(data: dict) -> str:
    rows = []
    for run in data["runs"]:
        n, times, med = run["triples_per_step"], run["seconds_per_step"], run["seconds_per_step_median"]
        counts = run["entities_encoded_per_step_on_the_fly"]
        rows.append([str(n), "memory lookup", ", ".join(f"{t:.2f}" for t in times["memory"]), f"{med['memory']:.2f}", ""])
        rows.append([str(n), f"LM1 on the fly ({min(counts):,}–{max(counts):,} descriptions per step)",
                     ", ".join(f"{t:.2f}" for t in times["on_the_fly"]), f"{med['on_the_fly']:.2f}",
                     f"**{run['speedup_memory_vs_on_the_fly']:.1f}×**"])
    enc = data["memory_encoding"]
    extra = ([f"encoding the memory ({enc['entities']:,} descriptions) took {enc['wall_seconds']:.0f} s wall"]
             if enc.get("wall_seconds") is not None else [])
    steps = len(data["runs"][0]["seconds_per_step"]["memory"])
    return _rows(["triples per step", "E^(0) source", f"seconds per step ({steps} steps)", "median", "speed-up"],
                 ["---", "---", "---", "---:", "---:"], rows) + _caption(data, *extra)


def _hp(row: dict) -> str:
    return f"{row['lr']:g} × {row['epochs']}" if "lr" in row else "–"


def _count(row: dict, key: str) -> str:
    value = row.get(key)
    return "–" if value is None else f"{value:,.0f}" if key == "trainable_params" else f"{value:.0f}"


def real_data_factual(data: dict) -> str:
    rows, gains = [], []
    for name, row in data["factual"]["rows"].items():
        dev, test = row.get("dev", {}), row.get("test", {})
        rows.append([name, _hp(row), _pct(dev.get("accuracy")), _pct(test.get("accuracy")), _pct(test.get("micro_f1")),
                     _pct(test.get("macro_f1")), _count(row, "train_seconds"), _count(row, "trainable_params")])
        gain = test.get("accuracy_gain_vs_probe")
        if gain:
            gains.append(f"- {name} vs backbone probe, test accuracy: **{gain['points']:+.1f} points** "
                         f"(95% CI {gain['ci95'][0]:+.1f} .. {gain['ci95'][1]:+.1f})")
    header = ["model", "lr × epochs", "dev acc", "test acc", "test micro-F1", "test macro-F1", "train s", "trainable params"]
    d = data["factual"]["data"]
    caption = (f"\nTrain {d['train_examples']:,} sentences / {d['train_facts']:,} facts, dev {d['dev_examples']:,} / "
               f"{d['dev_facts']:,}, test {d['test_examples']:,} / {d['test_facts']:,}; {d['train_relations']} relations.\n")
    return _rows(header, ["---", "---"] + ["---:"] * 6, rows) + caption + ("\n" + "\n".join(gains) + "\n" if gains else "")


def real_data_linguistic(data: dict) -> str:
    rows = [[name, _hp(row), _pct(row.get("dev", {}).get("uas")), _pct(row.get("test", {}).get("uas")),
             _count(row, "train_seconds"), _count(row, "trainable_params")] for name, row in data["linguistic"]["rows"].items()]
    d = data["linguistic"]["data"]
    caption = (f"\nTrain {d['train_sentences']:,} of {d['train_of']:,} sentences; dev {d['dev_sentences']:,} of "
               f"{d['dev_of']:,} sentences ({d['dev_words']:,} words), test {d['test_sentences']:,} of {d['test_of']:,} "
               f"({d['test_words']:,} words).\n")
    infused = data["linguistic"]["rows"].get("K-Adapter infused (infusion head)", {})
    fact_infused = data["factual"]["rows"].get("K-Adapter infused (infusion head)", {})
    curves = [f"{task} " + " → ".join(_pct(h.get(key)) for h in row.get("dev_history", []))
              for task, row, key in (("factual", fact_infused, "accuracy"), ("UD", infused, "uas")) if row.get("dev_history")]
    curve = f"\nDev curves of the infusion, one value per epoch: {'; '.join(curves)}.\n" if curves else ""
    return _rows(["model", "lr × epochs", "dev UAS", "test UAS", "train s", "trainable params"],
                 ["---", "---"] + ["---:"] * 4, rows) + caption + curve


def real_data_trex_counts(data: dict) -> str:
    d = data["factual"]["data"]
    rows = [["evidence sentences read (`read_lama_trex_dir`)", f"{d['evidences_read']:,}"],
            ["skipped by the reader (subject not found)", f"{sum(d['evidences_skipped_by_reader'].values()):,}"],
            ["facts (lines of the `P*.jsonl.gz` files)", f"{d['facts']:,}"],
            ["fact groups (same lower-cased subject/object pair)", f"{d['fact_groups']['total']:,}"],
            ["exact (sentence, spans) duplicates dropped", f"{d['duplicates_dropped']:,}"],
            ["(sentence, spans) with two relations dropped", f"{d['ambiguous_examples_dropped']:,}"],
            ["too long for the markers and max length, dropped", f"{d['too_long_dropped']:,}"]]
    return _rows(["LAMA T-REx, 28 relations", "count"], ["---", "---:"], rows)


def real_data_cache(data: dict) -> str:
    cache = data["settings"]["backbone_cache"]
    rows = [[task, f"{cache[task]['sequences_computed']:,}", f"{cache[task]['sequences_reused']:,}"]
            for task in ("factual", "linguistic") if task in cache]
    return _rows(["task", "sequences the backbone encoded", "batch rows served from the cache"], ["---", "---:", "---:"],
                 rows) + f"\n*Start-up check, max |cached − plain| on a padded batch: {cache['check_max_abs_diff']:.1e}.*\n"


def gpu_check(data: dict) -> str:
    """``benchmarks/gpu_check.py`` on a GPU: bf16 rate, cached vs live infusion of two plug-ins, and CUDA peak
    memory / tokens per second of the gradient-checkpointed passes."""
    r = data["results"]
    rows = [["bf16 matmul 8192³ (TFLOP/s)", f"{r['matmul_tflops_bf16']:.0f}"],
            ["infusion step, two K-Adapter plug-ins, batch 128 × 64: live backbone / cached (ms)",
             f"{1000 * r['infusion_reference_step_s']:.1f} / {1000 * r['infusion_cached_step_s']:.1f}"],
            ["infusion tokens/s: live / cached", f"{r['infusion_reference_tokens_per_s']:,} / {r['infusion_cached_tokens_per_s']:,}"],
            ["cached ÷ live speed-up", f"**{r['infusion_cached_speedup']:.2f}×**"],
            ["first-step loss, cached − live (abs)", f"{r['infusion_cached_vs_reference_first_loss_abs_diff']:.1e}"],
            ["cache build (backbone pass + write, tokens/s)", f"{r['cache_build_tokens_per_s']:,}"]]
    for case in CHECKPOINTED_PASSES:
        off, on = f"gc_{case}_off", f"gc_{case}_on"
        rows.append([f"`{case}`: CUDA peak GiB off / on; tokens/s off / on",
                     f"{r[off + '_peak_gib']:.2f} / {r[on + '_peak_gib']:.2f}; "
                     f"{r[off + '_tokens_per_s']:,} / {r[on + '_tokens_per_s']:,}"])
    return _rows(["figure", "value"], ["---", "---:"], rows) + (
        f"\n*{r['device']}, torch {data['torch']}, bf16 autocast, RoBERTa-large shapes (random weights), "
        f"{data['steps']} timed steps after one warm-up; {r['total_seconds']:.0f} s inside the script; `{data['written_by']}`.*\n")


# table name -> (renderer, results file stem)
RENDERERS = {
    "quickstart": (quickstart, "quickstart"),
    "trelm-lama": (trelm_lama, "trelm_lama"),
    "trelm-lama-typed": (trelm_lama_typed, "trelm_lama"),
    "trelm-efficiency": (trelm_efficiency, "trelm_efficiency"),
    "trelm-routing-agreement": (trelm_routing_agreement, "trelm_routing_agreement"),
    "trelm-quality-lama": (trelm_quality_lama, "trelm_quality"),
    "trelm-quality-rc": (trelm_quality_rc, "trelm_quality"),
    "xlmk-mpararel": (xlmk_mpararel, "xlmk_mpararel"),
    "ud-pos-multilingual": (ud_pos_multilingual, "ud_pos_multilingual_small"),
    "raw-text-uas": (raw_text_uas, "raw_text_uas"),
    "kadapter-import": (kadapter_import, "kadapter_import"),
    "jaket-text": (jaket_text, "jaket_text"),
    "jaket-linking": (jaket_linking, "jaket_linking"),
    "gradient-checkpointing": (gradient_checkpointing, "gradient_checkpointing"),
    "fallback-cost": (fallback_cost, "fallback_cost"),
    "infusion-step": (infusion_step, "infusion_step_quick"),
    "real-data-infusion-quick": (real_data_infusion_quick, "real_data_infusion_quick"),
    "real-data-infusion-quick-time": (real_data_time, "real_data_infusion_quick"),
    "issue7-cache-quick": (issue7_cache, "issue7_cache_quick"),
    "issue7-cache-quick-memory": (issue7_cache_memory, "issue7_cache_quick"),
    "issue7-cache-full": (issue7_cache, "issue7_cache_full"),
    "jaket-memory-speed": (jaket_memory_speed, "jaket_memory_speed"),
    "real-data-trex-counts": (real_data_trex_counts, "real_data_infusion_quick"),
    "real-data-full-factual": (real_data_factual, "real_data_infusion_full"),
    "real-data-full-linguistic": (real_data_linguistic, "real_data_infusion_full"),
    "real-data-full-time": (real_data_time, "real_data_infusion_full"),
    "real-data-cache": (real_data_cache, "real_data_infusion_full"),
    "gpu-check": (gpu_check, "gpu_check"),
    "knowledge-effect": (knowledge_effect, "knowledge_effect"),
    "knowledge-effect-time": (knowledge_effect_time, "knowledge_effect"),
    "knowledge-effect-verdict": (knowledge_effect_verdict, "knowledge_effect"),
    "knowledge-effect-cache": (knowledge_effect_cache, "knowledge_effect"),
    "knowledge-effect-headline": (knowledge_effect_headline, "knowledge_effect"),
    "fact-recall": (fact_recall, "knowledge_effect"),
}


def render(name: str, results: Path = RESULTS) -> str:
    """The Markdown of table ``name`` from its JSON; KeyError names an unknown table."""
    if name not in RENDERERS:
        raise KeyError(f"unknown table {name!r}; known: {sorted(RENDERERS)}")
    renderer, stem = RENDERERS[name]
    path = results / f"{stem}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the results of table {name!r} ({err})") from None
    return renderer(data)


def marked_tables(text: str) -> list[str]:
    return [m["name"] for m in BLOCK.finditer(text)]


def differences(text: str, source: str = "<doc>", results: Path = RESULTS) -> list[str]:
    """One line per marked table whose Markdown is not what its JSON renders to."""
    problems = []
    for match in BLOCK.finditer(text):
        want = render(match["name"], results)
        if match["body"] != want:
            line = text[: match.start("body")].count("\n") + 1
            problems.append(f"{source}:{line}: table {match['name']!r} differs from its results JSON "
                            f"(re-render with python benchmarks/tables.py)")
    return problems


# Tables without measurements, allowed outside the markers, by their header line (doc -> headers). Everything
# else in a doc that is a Markdown table with a digit in it must sit between markers.
DESCRIPTIVE_TABLES = {
    "README.md": (
        "| family (folder) | paper | placement | status |",
        "| encoder (`model_type`) | K-Adapter | XLM-K | TRELM | JAKET | notes |",
        "| task head (`objective.name`) | reader (`data.format`) | metric | recipe |",
        "| what | paper | reference code | kadapt default | switch |",  # the per-family deviation tables
        "| format | files per checkpoint | resumes on |",
        "| what | where |",  # multi-node: where run folders, caches and data live
    ),
}


def unmarked_tables(text: str, allowed: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """(line, header) of each Markdown table outside the marked blocks and code fences that holds a digit
    and whose header line is not in ``allowed``."""
    text = BLOCK.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # keep the line numbers
    found, fenced, previous = [], False, False
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        fenced ^= line.lstrip().startswith("```")
        is_row = not fenced and line.startswith("|")
        if is_row and not previous:
            table = [line] + [row for row in itertools.takewhile(lambda r: r.startswith("|"), lines[number:])]
            if any(re.search(r"\d", row) for row in table) and line.strip() not in allowed:
                found.append((number, line.strip()))
        previous = is_row
    return found


def unmarked_problems(text: str, source: str) -> list[str]:
    return [f"{source}:{line}: Markdown table with numbers outside <!-- table: NAME --> markers: {header[:80]}"
            for line, header in unmarked_tables(text, DESCRIPTIVE_TABLES.get(source, ()))]


def rendered(text: str, results: Path = RESULTS) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m["name"], results) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when a table differs")
    args = parser.parse_args(argv)
    try:
        problems = _check_or_render(args.check)
    except (KeyError, ValueError) as err:  # an unknown table name or an unreadable results file
        problems = [str(err).strip('"')]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _check_or_render(check: bool) -> list[str]:
    problems = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        source = doc.relative_to(REPO).as_posix()
        problems += unmarked_problems(text, source)
        if check:
            problems += differences(text, source)
        elif rendered(text) != text:
            doc.write_text(rendered(text), encoding="utf-8")
            print(f"re-rendered {doc.relative_to(REPO)}")
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
