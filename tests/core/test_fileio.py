"""Atomic safetensors/JSON writes: round trips, including the empty cases."""
from __future__ import annotations

import torch

from kadapt.core.fileio import load_tensors, save_tensors


def test_empty_tensor_file_round_trips(tmp_path):
    # an optimizer before its first step has no state: its checkpoint file holds no tensors
    save_tensors(tmp_path / "empty.safetensors", {})
    assert load_tensors(tmp_path / "empty.safetensors") == ({}, {})
    save_tensors(tmp_path / "meta.safetensors", {}, {"kind": "x"})
    assert load_tensors(tmp_path / "meta.safetensors") == ({}, {"kind": "x"})


def test_tensors_and_metadata_round_trip_bit_identically(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_tensors(tmp_path / "t.safetensors", tensors, {"n": 2})
    loaded, meta = load_tensors(tmp_path / "t.safetensors")
    assert meta == {"n": "2"}
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
