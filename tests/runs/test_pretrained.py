"""The HF verbs: a fine-tuned run reloads as one object and ``save_pretrained`` writes the same run layout
(bit-identical tensors), ``${VAR}`` placeholders are resolved in what a run records, ``.half()`` moves the
backbone, ``print_trainable_parameters`` counts exactly, raw-text ``predict`` gives labels with the
head's own scores, and bad inputs are one line."""
from __future__ import annotations

import json

import pytest
import torch
from run_kit import ADAPTER, factual_recipe, finetune_recipe

from kadapt import KnowledgeModel, PaddingCollator, Plugin, build_plugin
from kadapt.cli.app import main
from kadapt.core.errors import DataError, KadaptError
from kadapt.core.folders import FolderExistsError
from kadapt.runs.finetune import finetune, load_finetuned
from kadapt.runs.infuse import infuse
from kadapt.runs.recipe import recipe_from_dict
from kadapt.store.plugin_dir import CONFIG_FILE

TEXTS = ["@ Obama @ was born in # Hawaii # .", "@ Paris @ is the capital of # France # .",
         "@ Marie Curie @ worked in # Paris # ."]


@pytest.fixture(scope="module")
def run(world, backbone_dir, tmp_path_factory):
    """A fine-tuned run (trainable plug-in, K-Adapter fusion) whose recipes name the backbone ``${VAR}``."""
    root = tmp_path_factory.mktemp("pretrained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KADAPT_TEST_BACKBONE", str(backbone_dir))
        infused = infuse(recipe_from_dict(factual_recipe(world, "${KADAPT_TEST_BACKBONE}", root / "f", epochs=1)))
        recipe = finetune_recipe(world, "${KADAPT_TEST_BACKBONE}", root / "ft", [infused.plugin_dir], epochs=1)
        recipe["finetune"] = {"plugins": "trainable", "fusion": "kadapter"}
        finetune(recipe_from_dict(recipe))
    return {"run": root / "ft", "plugin": infused.plugin_dir}


def _batch(model, texts=TEXTS):
    return PaddingCollator(model.backbone.tokenizer)(model.encode_texts(texts))


def test_placeholders_are_resolved_in_what_a_run_records(run, backbone_dir):
    info = json.loads((run["run"] / "head_config.json").read_text())
    assert info["backbone"] == str(backbone_dir)
    assert info["backbone_fingerprint"]["name_or_path"] == str(backbone_dir)
    assert info["backbone_fingerprint"]["revision"] is None  # a local folder has no Hub commit
    record = json.loads((run["plugin"] / CONFIG_FILE).read_text())
    assert record["backbone"]["name_or_path"] == str(backbone_dir)


def test_a_run_reloads_as_one_object_and_saves_the_same_layout(run, tmp_path):
    model = KnowledgeModel.from_pretrained(run["run"])
    reference = load_finetuned(run["run"])
    assert isinstance(model, KnowledgeModel)
    torch.testing.assert_close(model(_batch(model)).logits, reference(_batch(reference)).logits, rtol=0, atol=0)

    saved = model.save_pretrained(tmp_path / "saved")
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert files == sorted(["README.md", "fusion.safetensors", "head.safetensors", "head_config.json",
                            "plugins.safetensors", "plugins/0-factual/README.md", f"plugins/0-factual/{CONFIG_FILE}",
                            "plugins/0-factual/manifest.json", "plugins/0-factual/model.safetensors",
                            "plugins/0-factual/objective_heads.safetensors"])
    for name in ("head.safetensors", "fusion.safetensors", "plugins.safetensors"):
        assert (saved / name).read_bytes() == (run["run"] / name).read_bytes()
    ours, theirs = (json.loads((d / "head_config.json").read_text()) for d in (saved, run["run"]))
    assert ours.pop("plugins") == ["plugins/0-factual"] and theirs.pop("plugins") == [str(run["plugin"])]
    assert ours == theirs

    again = KnowledgeModel.from_pretrained(saved)
    torch.testing.assert_close(again(_batch(again)).logits, model(_batch(model)).logits, rtol=0, atol=0)
    assert again.predict(TEXTS) == model.predict(TEXTS)
    with pytest.raises(FolderExistsError, match="a model already exists here; pass overwrite=True"):
        model.save_pretrained(saved)


def test_predict_gives_the_heads_labels_and_softmax_scores(run):
    model = KnowledgeModel.from_pretrained(run["run"])
    predictions = model.predict(TEXTS, batch_size=2)
    logits = model.eval()(_batch(model)).logits
    labels = model.head.config_dict()["labels"]
    assert [p["text"] for p in predictions] == TEXTS
    assert [p["label"] for p in predictions] == [labels[i] for i in logits.argmax(-1).tolist()]
    assert [p["score"] for p in predictions] == pytest.approx(logits.softmax(-1).max(-1).values.tolist(), abs=1e-6)
    # SemEval's markup is the same record: the same prediction, bit for bit
    semeval = model.predict(["<e1>Obama</e1> was born in <e2>Hawaii</e2> ."])[0]
    assert (semeval["label"], semeval["score"]) == (predictions[0]["label"], predictions[0]["score"])


def test_raw_text_without_the_markup_is_one_line(run, capsys):
    model = KnowledgeModel.from_pretrained(run["run"])
    with pytest.raises(DataError) as err:
        model.predict(["@ Obama @ was born in # Hawaii # .", "Obama was born in Hawaii ."])
    assert str(err.value) == ("text 1: 'Obama was born in Hawaii .': a relation head needs the subject between @ … @ "
                              "and the object between # … # (or <e1>…</e1> … <e2>…</e2>), e.g. "
                              "'@ Obama @ was born in # Hawaii # .'")
    assert main(["predict", str(run["run"]), "--text", "Obama was born in Hawaii ."]) == 2
    assert capsys.readouterr().err == f"kadapt: error: text 0: 'Obama was born in Hawaii .': a relation head needs " \
        "the subject between @ … @ and the object between # … # (or <e1>…</e1> … <e2>…</e2>), e.g. " \
        "'@ Obama @ was born in # Hawaii # .'\n"


def test_predict_cli_text_prints_one_json_line_per_text(run, capsys):
    assert main(["predict", str(run["run"]), "--text", TEXTS[0], "--text", TEXTS[1]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == KnowledgeModel.from_pretrained(run["run"]).predict(TEXTS[:2])


def test_entity_typing_reads_a_marked_mention_and_scores_every_type(backbone_dir, run):
    torch.manual_seed(0)
    model = KnowledgeModel.from_pretrained(backbone_dir, head="entity_typing", labels=["person", "place"])
    (prediction,) = model.predict(["In 1905 @ Einstein @ published four papers ."])
    batch = PaddingCollator(model.backbone.tokenizer)(model.encode_texts(["In 1905 @ Einstein @ published four papers ."]))
    probabilities = model.eval()(batch).logits.sigmoid()[0].tolist()
    assert prediction["score"] == pytest.approx(dict(zip(["person", "place"], probabilities)), abs=1e-6)
    assert prediction["label"] == [t for t, p in zip(["person", "place"], probabilities) if p > 0.5]
    assert "labels" not in model.encode_texts(["@ Einstein @ wrote ."])[0]  # no dummy gold label
    with pytest.raises(DataError, match=r"^text 0: 'Einstein wrote \.': the entity_typing head needs the mention "
                                        r"between @ … @"):
        model.predict(["Einstein wrote ."])


def test_half_moves_the_backbone_and_trainable_parameters_are_counted(backbone_dir, run, capsys):
    model = KnowledgeModel.from_pretrained(backbone_dir, plugins=[run["plugin"]], head="relation_classification",
                                           labels=["a", "b", "c"])
    head = 2 * (2 * 32) * 3 + 3  # classifier over [subject ; object] features of [backbone 32 ; plug-in 32]
    backbone = sum(p.numel() for p in model.backbone.model.parameters())
    plugin = sum(p.numel() for p in model.plugins[0].parameters())
    model.print_trainable_parameters()
    assert capsys.readouterr().out == (f"trainable params: {head:,} || all params: {head + backbone + plugin:,} || "
                                       f"trainable%: {100 * head / (head + backbone + plugin):.4f}\n")
    model.half()
    assert {p.dtype for p in model.backbone.model.parameters()} == {torch.float16}
    assert {p.dtype for p in model.parameters()} == {torch.float16}
    model.float()
    assert model.backbone.dtype == torch.float32


def test_plugin_verbs_and_their_errors(run, backbone_dir, tmp_path):
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.plugins.kadapter.plugin import KAdapter

    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    plugin = KAdapter.from_pretrained(run["plugin"], backbone)
    copy = plugin.save_pretrained(tmp_path / "copy")  # against the fingerprint recorded where it was loaded
    assert json.loads((copy / CONFIG_FILE).read_text())["backbone"] == \
        json.loads((run["plugin"] / CONFIG_FILE).read_text())["backbone"]
    assert all(torch.equal(a, b) for a, b in zip(Plugin.from_pretrained(copy, backbone).state_dict().values(),
                                                 plugin.state_dict().values()))
    built = build_plugin("kadapter", {"name": "new", **ADAPTER}, backbone.spec)
    with pytest.raises(KadaptError, match=r"^plug-in 'new' was built in code: save_pretrained\(dir, backbone\) needs"):
        built.save_pretrained(tmp_path / "new")
    with pytest.raises(KadaptError, match="revision='v1' applies to Hub repo ids; this is a local folder"):
        Plugin.from_pretrained(run["plugin"], backbone, revision="v1")


def test_dtype_casts_the_whole_model_and_a_sentence_head_reads_plain_text(backbone_dir, run):
    model = KnowledgeModel.from_pretrained(backbone_dir, head="sentence_classification", labels=["neg", "pos"],
                                           dtype="bfloat16")
    assert model.backbone.dtype == torch.bfloat16 and {p.dtype for p in model.parameters()} == {torch.bfloat16}
    (prediction,) = model.predict(["The quick brown fox jumps ."])
    logits = model.eval()(_batch(model, ["The quick brown fox jumps ."])).logits.float()
    assert prediction["label"] == ["neg", "pos"][int(logits.argmax(-1))]
    assert prediction["score"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-6)
    with pytest.raises(KadaptError, match=r"^dtype 'float8' unknown; use one of \['bfloat16', 'float16', 'float32'\]$"):
        KnowledgeModel.from_pretrained(backbone_dir, dtype="float8")


def test_a_missing_backbone_folder_is_one_line(tmp_path):
    with pytest.raises(KadaptError) as err:
        KnowledgeModel.from_pretrained(tmp_path / "nowhere" / "bb")
    assert str(err.value) == (f"{tmp_path / 'nowhere' / 'bb'}: no such backbone folder (and not a Hub name such as "
                              "'roberta-large' or 'org/model')")


def test_a_model_built_in_code_saves_and_reloads(backbone_dir, run, tmp_path):
    from kadapt.core.backbone import FrozenBackbone
    from kadapt.core.objective import build_objective

    backbone = FrozenBackbone.from_pretrained(backbone_dir)
    plugin = Plugin.from_pretrained(run["plugin"], backbone)
    torch.manual_seed(0)
    model = KnowledgeModel(backbone, [plugin])
    model.head = build_objective("relation_classification", model.feature_size, {"labels": ["x", "y"]})
    saved = model.save_pretrained(tmp_path / "m")
    info = json.loads((saved / "head_config.json").read_text())
    assert (info["plugins"], info["finetune"]["plugins"], info["max_length"]) == (["plugins/0-factual"], "frozen", 128)
    again = KnowledgeModel.from_pretrained(saved)
    torch.testing.assert_close(again(_batch(again)).logits, model.eval()(_batch(model)).logits, rtol=0, atol=0)
    assert not any(p.requires_grad for p in plugin.parameters())  # saving did not change what trains
