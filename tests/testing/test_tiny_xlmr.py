"""The tiny XLM-R: a sentencepiece-like tokenizer that is byte-identical in every process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from xlmk_kit import fixture_texts

from kadapt.core.backbone import FrozenBackbone, hash_tokenizer
from kadapt.testing.tiny_xlmr import build_tiny_xlmr, multilingual_tokenizer

REPO = Path(__file__).resolve().parents[2]
_PROBE = ("import sys; sys.path.insert(0, 'tests'); from xlmk_kit import fixture_texts; "
          "from kadapt.core.backbone import hash_tokenizer; "
          "from kadapt.testing.tiny_xlmr import multilingual_tokenizer; "
          "print(hash_tokenizer(multilingual_tokenizer(fixture_texts(), 300)))")


def test_tokenizer_is_identical_across_processes():
    """Another process with another hash seed builds the same tokenizer (the tokenizers Unigram trainer does not)."""
    here = hash_tokenizer(multilingual_tokenizer(fixture_texts(), 300))
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == here


def test_tokenizer_covers_scripts_and_uses_xlmr_specials():
    tok = multilingual_tokenizer(fixture_texts(), 300)
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    for text in ("巴黎是法国的首都。", "Berlin ist die Hauptstadt", "Paris est la capitale"):
        ids = tok(text)["input_ids"]
        assert ids[0] == 0 and ids[-1] == 2 and tok.unk_token_id not in ids
    assert tok.convert_tokens_to_ids("<mask>") in tok("Paris is <mask> .")["input_ids"]


def test_tiny_xlmr_loads_as_a_frozen_backbone(tmp_path):
    out = build_tiny_xlmr(tmp_path, fixture_texts(), vocab_size=300)
    backbone = FrozenBackbone.from_pretrained(out)
    assert backbone.spec.model_type == "xlm-roberta" and backbone.spec.vocab_size == len(backbone.tokenizer)
    again = FrozenBackbone.from_pretrained(build_tiny_xlmr(tmp_path / "again", fixture_texts(), vocab_size=300))
    assert again.fingerprint == backbone.fingerprint  # same texts and seed → the same backbone
