"""Tiny local backbones: they load with the Auto classes, are seeded, and have the right specials."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, RobertaModel

from kadapt.testing.tiny import build_tiny_backbone, roberta_large_config, train_tokenizer

TEXTS = ["Barack Obama was born in Hawaii .",
         "Marie Curie worked in Paris with Pierre Curie .",
         "She reads books about unbelievable transformations ."] * 3

SPECIALS = {
    "bert": {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]",
             "unk_token": "[UNK]"},
    "roberta": {"pad_token": "<pad>", "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>",
                "unk_token": "<unk>"},
}
SPECIALS["xlm-roberta"] = SPECIALS["roberta"]
MODEL_CLASSES = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel"}


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta"])
def test_build_load_and_run(tmp_path, model_type):
    out = build_tiny_backbone(tmp_path / model_type, model_type, TEXTS, num_layers=2, hidden_size=32,
                              num_heads=4, intermediate_size=64, vocab_size=300,
                              max_position_embeddings=64)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    model = AutoModel.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == MODEL_CLASSES[model_type] and tok.is_fast
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
            cfg.max_position_embeddings) == (2, 32, 4, 64, 64)
    assert cfg.vocab_size == len(tok) <= 300
    for attr, value in SPECIALS[model_type].items():
        assert getattr(tok, attr) == value
    assert cfg.pad_token_id == tok.pad_token_id == (0 if model_type == "bert" else 1)
    assert tok.model_max_length == (64 if model_type == "bert" else 62)
    assert tok.unk_token_id not in tok("@ # .")["input_ids"]  # markers are in every vocabulary
    batch = tok(["Obama was born in Hawaii .", "x " * 100], padding=True, truncation=True,
                return_tensors="pt")
    assert batch["input_ids"].shape[1] == tok.model_max_length
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (2, tok.model_max_length, 32) and torch.isfinite(hidden).all()


def test_seeded_weights(tmp_path):
    kw = dict(num_layers=1, hidden_size=16, num_heads=2, intermediate_size=32, vocab_size=200)
    a = load_file(build_tiny_backbone(tmp_path / "a", "roberta", TEXTS, seed=3, **kw) / "model.safetensors")
    b = load_file(build_tiny_backbone(tmp_path / "b", "roberta", TEXTS, seed=3, **kw) / "model.safetensors")
    c = load_file(build_tiny_backbone(tmp_path / "c", "roberta", TEXTS, seed=4, **kw) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    state = torch.random.get_rng_state()
    build_tiny_backbone(tmp_path / "d", "bert", TEXTS, seed=5, **kw)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched


def test_mlm_head_variant(tmp_path):
    out = build_tiny_backbone(tmp_path / "mlm", "bert", TEXTS, num_layers=1, hidden_size=16,
                              num_heads=2, intermediate_size=32, with_mlm_head=True)
    model, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tok = AutoTokenizer.from_pretrained(out)
    logits = model(**tok(["Paris is [MASK] ."], return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok)


def test_tokenizer_families():
    bert = train_tokenizer("bert", TEXTS, 200)
    assert bert.convert_ids_to_tokens(bert("Obama")["input_ids"])[0] == "[CLS]"
    assert bert.tokenize("OBAMA") == bert.tokenize("obama")  # uncased
    roberta = train_tokenizer("roberta", TEXTS, 400)
    assert "Ġ" in "".join(roberta.tokenize("born in Hawaii"))  # byte-level BPE marks spaces with Ġ
    xlmr = train_tokenizer("xlm-roberta", TEXTS, 150)
    assert xlmr.tokenize("born in")[0].startswith("▁")  # sentencepiece-style word starts
    with pytest.raises(ValueError, match="model_type"):
        train_tokenizer("gpt2", TEXTS, 100)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-blank"):
        train_tokenizer("bert", [" "], 100)


def test_roberta_large_config_on_meta_device():
    cfg = roberta_large_config()
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
            cfg.vocab_size, cfg.max_position_embeddings, cfg.type_vocab_size) == \
        (24, 1024, 16, 4096, 50265, 514, 1)
    with torch.device("meta"):
        model = RobertaModel(cfg)
    # the published parameter count of roberta-large (with pooler)
    assert sum(p.numel() for p in model.parameters()) == 355_359_744
    assert cfg.model_type == "roberta" and cfg.pad_token_id == 1 and cfg.layer_norm_eps == 1e-5


def test_bert_backbone_is_byte_identical_across_processes(tmp_path):
    """Same corpus + seed → the same files in two fresh interpreters (quickstart relies on it)."""
    import hashlib
    import subprocess
    import sys

    script = (
        "import sys; from kadapt.testing.tiny import build_tiny_backbone\n"
        "texts = ['Vorkel was born in Tashimu .', 'Records mention Zaikek with Fastaimou .'] * 3\n"
        "build_tiny_backbone(sys.argv[1], 'bert', texts, num_layers=1, hidden_size=16, num_heads=2,\n"
        "                    intermediate_size=32, vocab_size=300, seed=3)\n"
    )
    digests = []
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / name).iterdir()) if p.is_file()})
    assert digests[0] == digests[1]
    assert "model.safetensors" in digests[0]
