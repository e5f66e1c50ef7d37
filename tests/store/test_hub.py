"""The Hub through ``huggingface_hub``: backbones, plug-ins and fine-tuned runs by repo id from a populated
offline cache (the layout ``hf_hub_download`` writes), ``revision`` by branch and by commit, the card's
metadata header, the exact upload plan, and the one-line errors (repo not cached offline, a PEFT repo)."""
from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard
from hub_kit import add_to_cache, commit_id, offline_cache
from run_kit import ADAPTER, BACKBONE_KW

from kadapt import FrozenBackbone, KnowledgeModel, Plugin, build_plugin
from kadapt.core.errors import PluginFormatError
from kadapt.store.hub import HubError, upload_plan
from kadapt.store.plugin_dir import CONFIG_FILE

BACKBONE_COMMIT, V1, V2 = commit_id("backbone"), commit_id("plug-in v1"), commit_id("plug-in v2")


@pytest.fixture(scope="module")
def hub(tiny_backbone_dir, tmp_path_factory):
    """A cache with a tiny backbone repo, a plug-in repo at two commits (main → v1, branch v2 → v2)."""
    root = tmp_path_factory.mktemp("hub")
    backbone_dir = tiny_backbone_dir("bert", **BACKBONE_KW)
    local = FrozenBackbone.from_pretrained(backbone_dir)
    add_to_cache(root / "cache", "kadapt-test/tiny-bert", backbone_dir, BACKBONE_COMMIT)
    plugins = {}
    for seed, commit, ref in ((0, V1, "main"), (1, V2, "v2")):
        torch.manual_seed(seed)
        plugin = build_plugin("kadapter", {"name": "factual", **ADAPTER}, local.spec)
        plugin.save_pretrained(root / f"factual-{seed}", local)
        add_to_cache(root / "cache", "kadapt-test/factual", root / f"factual-{seed}", commit, refs=(ref,))
        plugins[ref] = plugin.state_dict()
    return {"root": root, "cache": root / "cache", "plugins": plugins, "backbone_dir": backbone_dir}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_backbone_and_plugin_by_repo_id_from_the_offline_cache(hub, monkeypatch):
    offline_cache(monkeypatch, hub["cache"])
    model = KnowledgeModel.from_pretrained("kadapt-test/tiny-bert", plugins=["kadapt-test/factual"])
    fingerprint = model.backbone.fingerprint
    assert (fingerprint.name_or_path, fingerprint.revision) == ("kadapt-test/tiny-bert", BACKBONE_COMMIT)
    assert fingerprint.weights_sha256 == FrozenBackbone.from_pretrained(hub["backbone_dir"]).fingerprint.weights_sha256
    assert _same(model.plugins[0].state_dict(), hub["plugins"]["main"])
    # revision: a branch, a commit, and the backbone at an explicit commit
    assert _same(Plugin.from_pretrained("kadapt-test/factual", model.backbone, revision="v2").state_dict(),
                 hub["plugins"]["v2"])
    assert _same(Plugin.from_pretrained("kadapt-test/factual", model.backbone, revision=V1).state_dict(),
                 hub["plugins"]["main"])
    pinned = KnowledgeModel.from_pretrained("kadapt-test/tiny-bert", revision=BACKBONE_COMMIT)
    assert pinned.backbone.fingerprint.revision == BACKBONE_COMMIT


def test_card_header_names_the_hub_backbone_and_the_metrics(hub, monkeypatch, tmp_path):
    offline_cache(monkeypatch, hub["cache"])
    model = KnowledgeModel.from_pretrained("kadapt-test/tiny-bert", plugins=["kadapt-test/factual"])
    folder = model.plugins[0].save_pretrained(tmp_path / "p", model.backbone, card={
        "license": "apache-2.0", "datasets": ["lama-trex"], "dataset": "lama-trex", "task": "text-classification",
        "metrics": {"accuracy": 0.75, "micro_f1": 0.5}})
    record = json.loads((folder / CONFIG_FILE).read_text())
    assert record["backbone"]["name_or_path"] == "kadapt-test/tiny-bert"
    assert record["backbone"]["revision"] == BACKBONE_COMMIT
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "kadapt" and data["base_model"] == "kadapt-test/tiny-bert"
    assert data["license"] == "apache-2.0" and data["datasets"] == ["lama-trex"]
    assert data["tags"] == ["kadapt", "knowledge-plugin", "kadapter"]
    assert data["metrics"] == ["accuracy", "micro_f1"]
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("accuracy", 0.75), ("micro_f1", 0.5)]
    assert "KnowledgeModel.from_pretrained('kadapt-test/tiny-bert', revision=" in card.text


def test_fine_tuned_model_by_repo_id(hub, monkeypatch, tmp_path):
    offline_cache(monkeypatch, hub["cache"])
    model = KnowledgeModel.from_pretrained("kadapt-test/tiny-bert", plugins=["kadapt-test/factual"],
                                           head="relation_classification", labels=["born_in", "capital_of"])
    saved = model.save_pretrained(tmp_path / "rc")
    add_to_cache(hub["cache"], "kadapt-test/rc", saved, commit_id("rc"))
    again = KnowledgeModel.from_pretrained("kadapt-test/rc")
    assert again.backbone.fingerprint.revision == BACKBONE_COMMIT  # the recorded backbone, from the cache
    texts = ["@ Obama @ was born in # Hawaii # .", "@ Paris @ is the capital of # France # ."]
    assert again.predict(texts) == model.predict(texts)
    assert _same(again.head.state_dict(), model.head.state_dict())


def test_unknown_repo_offline_is_one_line_saying_how_to_fetch_it(hub, monkeypatch, tiny_backbone):
    cache = offline_cache(monkeypatch, hub["cache"])
    with pytest.raises(HubError) as err:
        Plugin.from_pretrained("nobody/missing", tiny_backbone, revision="v1")
    assert str(err.value) == (
        f"nobody/missing: no such plug-in folder, and the Hub repo is not in the local cache ({cache}) at revision "
        "'v1' and HF_HUB_OFFLINE is set; fetch it where the Hub is reachable: `hf download nobody/missing "
        "--revision v1` (same HF_HUB_CACHE), or pass a local folder")
    with pytest.raises(HubError, match=r"^nobody/bert: no such backbone folder, and the Hub repo is not in the local"):
        KnowledgeModel.from_pretrained("nobody/bert")


def test_a_peft_repo_is_refused_in_one_line(hub, monkeypatch, tmp_path, tiny_backbone):
    peft = tmp_path / "lora"
    peft.mkdir()
    (peft / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": "roberta-base", "r": 8, "lora_alpha": 16,
        "target_modules": ["query", "value"], "task_type": "SEQ_CLS"}))
    (peft / "adapter_model.safetensors").write_bytes(b"")
    add_to_cache(hub["cache"], "someone/roberta-lora", peft, commit_id("lora"))
    offline_cache(monkeypatch, hub["cache"])
    with pytest.raises(PluginFormatError) as err:
        KnowledgeModel.from_pretrained(hub["backbone_dir"], plugins=["someone/roberta-lora"])
    assert str(err.value) == ("someone/roberta-lora: holds a PEFT adapter (peft_type 'LORA'), not a kadapt plug-in; "
                              "load it with peft: PeftModel.from_pretrained(base_model, folder)")


def test_upload_plan_is_every_file_of_the_saved_folder(hub, tmp_path, tiny_backbone):
    plugin = build_plugin("kadapter", {"name": "factual", **ADAPTER}, tiny_backbone.spec)
    folder = plugin.save_pretrained(tmp_path / "p", tiny_backbone)
    plan = upload_plan(folder)
    assert [op.path_in_repo for op in plan] == sorted(["README.md", CONFIG_FILE, "manifest.json", "model.safetensors"])
    for op in plan:
        assert open(op.path_or_fileobj, "rb").read() == (folder / op.path_in_repo).read_bytes()


def test_push_uploads_the_folder_to_a_hub_endpoint(tmp_path, tiny_backbone, monkeypatch):
    from huggingface_hub import constants
    from hub_kit import LocalHub

    plugin = build_plugin("kadapter", {"name": "factual", **ADAPTER}, tiny_backbone.spec)
    with LocalHub() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)  # what HF_ENDPOINT sets (commit URLs are parsed with it)
        info = plugin.push_to_hub("me/factual", tiny_backbone, endpoint=server.url, token="hf_test")
        folder = plugin.save_pretrained(tmp_path / "same", tiny_backbone)
    assert server.created == ["me/factual"]
    assert server.validated == [(folder / "README.md").read_text()]
    assert server.commits[0]["summary"] == "Upload kadapt plug-in"
    assert server.commits[0]["files"] == {p.name: p.read_bytes() for p in folder.iterdir()}  # the same bytes
    assert info.oid == server.commit_oid


def test_push_a_fine_tuned_model_uploads_its_saved_folder(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants
    from hub_kit import LocalHub

    model = KnowledgeModel.from_pretrained(hub["backbone_dir"], plugins=[hub["root"] / "factual-0"],
                                           head="relation_classification", labels=["born_in", "capital_of"])
    folder = model.save_pretrained(tmp_path / "saved", card={"license": "mit"})
    with LocalHub() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        model.push_to_hub("me/rc", endpoint=server.url, token="hf_test", card={"license": "mit"})
    expected = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert sorted(server.commits[0]["files"]) == sorted(expected) and "plugins/0-factual/model.safetensors" in expected
    assert server.commits[0]["files"] == expected
    assert server.commits[0]["summary"] == "Upload kadapt model"
    assert ModelCard(expected["README.md"].decode()).data.to_dict()["license"] == "mit"
