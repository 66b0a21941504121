"""Weights integrity: every file hash-checked, clear errors naming the file."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from dsa_core.config import TINY
from dsa_core.model import CausalWanModel
from dsa_core.weights import load_transformer, shipped_preset, verify_manifest, write_manifest


@pytest.fixture()
def folder(tmp_path):
    torch.manual_seed(0)
    save_file(CausalWanModel(TINY.model).state_dict(), str(tmp_path / "transformer.safetensors"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.json").write_text('{"a": 1}')
    write_manifest(tmp_path, "python -m dsa_core.train export")
    return tmp_path


def test_manifest_lists_every_file_and_the_command(folder):
    text = (folder / "MANIFEST").read_text()
    assert "# command: python -m dsa_core.train export" in text
    assert {p.name for p in verify_manifest(folder)} == {"transformer.safetensors", "config.json"}


def test_corrupted_file_is_refused_by_name(folder):
    path = folder / "transformer.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"transformer\.safetensors does not match its sha256"):
        verify_manifest(folder)


def test_truncated_file_is_refused_by_name(folder):
    path = folder / "sub" / "config.json"
    path.write_bytes(path.read_bytes()[:3])
    with pytest.raises(ValueError, match=r"sub/config\.json does not match its sha256"):
        verify_manifest(folder)


def test_missing_file_and_missing_manifest(folder):
    (folder / "sub" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"sub/config\.json is listed in .*MANIFEST but missing"):
        verify_manifest(folder)
    (folder / "MANIFEST").unlink()
    with pytest.raises(FileNotFoundError, match="MANIFEST is missing"):
        verify_manifest(folder)


def test_truncated_safetensors_without_manifest_is_a_clear_error(folder):
    path = folder / "transformer.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"transformer\.safetensors is not a readable safetensors file"):
        load_transformer(TINY, path)


def test_wrong_keys_are_named(folder, tmp_path):
    state = CausalWanModel(TINY.model).state_dict()
    state["blocks.0.extra"] = torch.zeros(1)
    del state["head.head.bias"]
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"bad\.safetensors: missing key 'head\.head\.bias'"):
        load_transformer(TINY, path)


def test_config_mismatch_is_named(tmp_path):
    path = tmp_path / "config.json"
    model = dataclasses.asdict(TINY.model) | {"dim": 256}
    path.write_text(json.dumps({"model": model, "height": 64, "width": 64, "shift": 2.0}))
    with pytest.raises(ValueError, match=r"model\.dim=256 but preset 'tiny' has 192"):
        shipped_preset(TINY, path)


@pytest.mark.parametrize("shift", [None, 0, -1.0, "5", True])
def test_weights_without_a_valid_shift_are_refused(tmp_path, shift):
    path = tmp_path / "config.json"
    config = {"model": dataclasses.asdict(TINY.model), "height": 64, "width": 64, "shift": shift}
    path.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    with pytest.raises(ValueError, match=r"shift=.* must be a positive number"):
        shipped_preset(TINY, path)


def test_weights_sample_on_the_grid_they_were_trained_on(tmp_path):
    path = tmp_path / "config.json"
    other = 7.5 if TINY.sampling.shift != 7.5 else 1.5
    path.write_text(json.dumps({"model": dataclasses.asdict(TINY.model), "height": 64, "width": 64, "shift": other}))
    preset = shipped_preset(TINY, path)
    assert preset.sampling.shift == other and preset.model == TINY.model
    assert TINY.sampling.shift != other  # the preset itself is untouched
