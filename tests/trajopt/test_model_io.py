"""Checkpoint loading for the diffog / leto methods: every unusable checkpoint is refused with a reason."""

from __future__ import annotations

import json

import pytest

from diffog_ros.trajopt import model_io
from diffog_ros.trajopt.model_io import (
    ModelCache,
    ModelLoadError,
    load_trajopt_model,
    read_model_meta,
    register_model_builder,
)

NAMES = ["a", "b", "c"]
META = {"kind": "diffog", "action_names": NAMES, "horizon": 4, "action_dim": 3}


def _ckpt(tmp_path, meta=META, name="ckpt"):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(meta))
    (d / "model.safetensors").write_bytes(b"\0" * 8)
    return d


class _Layer:
    def __init__(self, meta, weights):
        self.names = tuple(meta["action_names"])
        self.horizon = meta["horizon"]
        self.action_dim = meta["action_dim"]
        self.weights = weights

    def optimise(self, a, prev, spec):
        return a


@pytest.fixture
def builders(monkeypatch):
    monkeypatch.setattr(model_io, "_BUILDERS", {})
    monkeypatch.setattr(model_io, "BUILDER_MODULE", None)  # no builders from the learning package
    return model_io._BUILDERS


@pytest.mark.parametrize(
    ("meta", "word"),
    [
        ({**META, "kind": "other"}, "kind"),
        ({k: v for k, v in META.items() if k != "horizon"}, "horizon"),
        ({**META, "horizon": 0}, "horizon"),
        ({**META, "action_names": []}, "action_names"),
        ({**META, "action_dim": 4}, "action_names"),
        ({**META, "action_names": ["a", "a", "b"]}, "action_names"),
    ],
)
def test_bad_metadata_is_refused(tmp_path, meta, word):
    with pytest.raises(ModelLoadError, match=word):
        read_model_meta(_ckpt(tmp_path, meta))


def test_missing_and_corrupt_files_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="empty"):
        read_model_meta("")
    with pytest.raises(ModelLoadError, match="not found"):
        read_model_meta(tmp_path / "nope")
    d = _ckpt(tmp_path)
    (d / "config.json").write_text("{oops")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_model_meta(d)
    (d / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="JSON object"):
        read_model_meta(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="weights not found"):
        read_model_meta(d)


def test_json_file_path_and_safetensors_path_are_accepted(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps(META))
    (tmp_path / "m.safetensors").write_bytes(b"")
    for p in (tmp_path / "m.json", tmp_path / "m.safetensors"):
        meta, weights = read_model_meta(p)
        assert meta.names == tuple(NAMES) and weights == tmp_path / "m.safetensors"


def test_without_a_builder_loading_is_refused(tmp_path, builders):
    with pytest.raises(ModelLoadError, match="loader not available"):
        load_trajopt_model(_ckpt(tmp_path), "diffog")


def test_kind_mismatch_is_refused(tmp_path, builders):
    register_model_builder("leto", _Layer)
    with pytest.raises(ModelLoadError, match="'diffog' checkpoint"):
        load_trajopt_model(_ckpt(tmp_path), "leto")


def test_registered_builder_loads_and_cache_checks_names(tmp_path, builders):
    calls = []

    def build(meta, weights):
        calls.append(weights)
        return _Layer(meta, weights)

    register_model_builder("diffog", build)
    d = _ckpt(tmp_path)
    cache = ModelCache()
    m = cache.get(str(d), "diffog", tuple(NAMES))
    assert m.names == tuple(NAMES) and calls == [d / "model.safetensors"]
    assert cache.get(str(d), "diffog", tuple(NAMES)) is m and len(calls) == 1  # cached
    with pytest.raises(ModelLoadError, match="differ from joint_names"):
        cache.get(str(d), "diffog", ("c", "b", "a"))
    with pytest.raises(ModelLoadError, match="differ from joint_names"):
        load_trajopt_model(d, "diffog", expected_names=("c", "b", "a"))
    assert len(calls) == 1  # names are checked before building


def test_builder_errors_become_load_errors(tmp_path, builders):
    def broken(meta, weights):
        raise KeyError("tensor 'L' missing")

    register_model_builder("diffog", broken)
    with pytest.raises(ModelLoadError, match="cannot build"):
        load_trajopt_model(_ckpt(tmp_path), "diffog")
