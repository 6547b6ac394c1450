"""validate() finds each kind of defect; repair() fixes what can be fixed and never overwrites."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from data.episodes import write
from diffog_ros.data.dataset import load_episode
from diffog_ros.data.repair import RepairError, repair_dataset, repair_episode
from diffog_ros.data.validate import validate_dataset, validate_episode


@pytest.fixture
def episode(tmp_path):
    return write(tmp_path, T=25)


def _mutate(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(f, name, data):
    attrs = dict(f[name].attrs)
    del f[name]
    f.create_dataset(name, data=data)
    for k, v in attrs.items():
        f[name].attrs[k] = v


def test_clean_episode_has_no_defects(episode):
    rep = validate_episode(episode, decode_images="all")
    assert rep.ok, rep.defects
    assert rep.warnings == []


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (
            lambda f: _replace(f, "timestamps", f["timestamps"][()][::-1].copy()),
            "not strictly increasing",
        ),
        (
            lambda f: _replace(
                f, "observations/qpos", f["observations/qpos"][()].astype(np.float32)
            ),
            "must be float64",
        ),
        (lambda f: _replace(f, "action", f["action"][()][:-3]), "has shape"),
        (lambda f: f.attrs.__delitem__("fps"), "missing root attribute 'fps'"),
        (lambda f: f.attrs.__setitem__("joint_names", "not json ["), "not valid JSON"),
        (lambda f: f.attrs.__setitem__("status", "recording"), "was not closed"),
        (lambda f: f.attrs.__setitem__("num_samples", 3), "num_samples attribute 3"),
        (
            lambda f: f["observations/qvel"].__setitem__((4, 0), np.nan),
            "non-finite values in 1 valid rows",
        ),
        (lambda f: _replace(f, "valid/qpos", np.ones(25, dtype=np.int8)), "must be (25,) bool"),
        (lambda f: f.attrs.__setitem__("camera_names", '["cam_other"]'), "does not match images"),
    ],
    ids=[
        "timestamps",
        "float32",
        "length",
        "attr",
        "json",
        "status",
        "num_samples",
        "nan",
        "mask",
        "cameras",
    ],
)
def test_each_defect_is_reported(episode, mutation, expected):
    _mutate(episode, mutation)
    rep = validate_episode(episode)
    assert not rep.ok
    assert any(expected in d for d in rep.defects), rep.defects


def test_corrupt_and_interrupted_files_are_defects(tmp_path, episode):
    junk = tmp_path / "episode_7.hdf5"
    junk.write_bytes(b"\x89HDF\r\n garbage")
    assert any("cannot open" in d for d in validate_episode(junk).defects)
    tmp = tmp_path / "episode_8.hdf5.tmp"
    shutil.copy(episode, tmp)
    assert any("interrupted" in d for d in validate_episode(tmp).defects)


def test_dataset_report_flags_gaps_and_mixtures(tmp_path):
    write(tmp_path, T=5)
    write(tmp_path, T=5)
    other = write(tmp_path / "x", T=5)
    _mutate(other, lambda f: f.attrs.__setitem__("fps", 30.0))
    shutil.move(other, tmp_path / "episode_9.hdf5")
    reports = validate_dataset(tmp_path)
    top = reports[0]
    assert top.ok
    assert any("indices missing: [2, 3, 4, 5, 6, 7, 8]" in w for w in top.warnings), top.warnings
    assert any("disagree" in w for w in top.warnings)
    assert all(r.ok for r in reports[1:])


def test_repair_truncates_to_the_common_consistent_prefix(episode):
    def damage(f):
        _replace(f, "action", f["action"][()][:20])  # shorter than the rest
        ts = f["timestamps"][()]
        ts[15] = ts[14]  # not increasing from row 15
        _replace(f, "timestamps", ts)

    _mutate(episode, damage)
    before = load_episode(episode, ["observations/qpos"])["observations/qpos"]
    result = repair_episode(episode)
    assert result.action == "repaired"
    assert result.rows_kept == 15 and result.rows_dropped == 10
    assert validate_episode(result.output).ok
    after = load_episode(result.output, ["observations/qpos"])["observations/qpos"]
    np.testing.assert_array_equal(after, before[:15])


def test_repair_leaves_good_files_alone_and_refuses_to_overwrite(tmp_path, episode):
    assert repair_episode(episode).action == "unchanged"
    tmp = tmp_path / "episode_0.hdf5.tmp"
    shutil.copy(episode, tmp)
    with pytest.raises(RepairError, match="not overwriting"):
        repair_episode(tmp)
    out = repair_episode(tmp, out_dir=tmp_path / "elsewhere")
    assert out.output == tmp_path / "elsewhere" / "episode_0.hdf5"
    assert validate_episode(out.output).ok


def test_repair_dataset_reports_unrecoverable_files(tmp_path):
    (tmp_path / "episode_3.hdf5.tmp").write_bytes(b"not hdf5 at all")
    results = repair_dataset(tmp_path)
    assert [r.action for r in results] == ["failed"]
    assert "cannot open" in results[0].message
