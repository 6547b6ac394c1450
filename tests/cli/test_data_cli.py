"""``diffog-ros data info|validate|repair|convert`` as a user runs them (the console script)."""

from __future__ import annotations

import json
import shutil
import subprocess

import h5py
import numpy as np
import pytest
from data.episodes import ATTRS, JOINTS, write
from support.procs import BIN

from diffog_ros.data.dataset import list_episodes, load_episode
from diffog_ros.data.episode import EpisodeLayout, Sample
from diffog_ros.data.writer import EpisodeWriter


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "diffog-ros"), "data", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def dataset(tmp_path):
    d = tmp_path / "ds"
    write(d, T=20, seed=0)
    write(d, T=12, seed=1, compress=True)
    return d


def interrupted(directory, rows: int = 30):
    """A real interrupted recording: a snapshot of a temporary file taken while it is open."""
    lay = EpisodeLayout(JOINTS, ("qpos",), {})
    w = EpisodeWriter(directory, lay, ATTRS, fps=50)
    for i in range(rows):
        w.append(Sample(1.7e9 + i / 50, {"qpos": np.full(6, float(i))}))
        if i % 10 == 9:
            w.flush()
    w.append(Sample(1.7e9 + rows / 50, {"qpos": np.zeros(6)}))  # never flushed
    snapshot = directory / "snapshot"
    shutil.copy(w.tmp_path, snapshot)
    w.discard()
    snapshot.rename(w.tmp_path)
    return w.tmp_path


def test_help_and_usage_errors(tmp_path):
    proc = cli("--help")
    assert proc.returncode == 0 and "validate" in proc.stdout
    assert cli("convert", tmp_path, tmp_path / "o", "--to", "parquet").returncode == 2
    assert cli("validate", tmp_path / "missing").returncode == 2


def test_info_summarises_each_episode(dataset):
    proc = cli("info", dataset)
    assert proc.returncode == 0, proc.stderr
    assert "episode_0.hdf5: 20 samples" in proc.stdout
    assert "/observations/images/cam_high: (12, " in proc.stdout
    assert "2 episode(s), 32 samples" in proc.stdout
    data = json.loads(cli("info", "--json", dataset / "episode_1.hdf5").stdout)
    assert data[0]["samples"] == 12 and data[0]["compress"] is True


def test_validate_exit_code_tracks_defects(dataset):
    proc = cli("validate", "--images", "all", dataset)
    assert proc.returncode == 0, proc.stdout
    with h5py.File(dataset / "episode_0.hdf5", "r+") as f:
        f["timestamps"][5] = f["timestamps"][4]
    proc = cli("validate", dataset)
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "not strictly increasing" in proc.stdout
    report = json.loads(cli("validate", "--json", dataset / "episode_0.hdf5").stdout)
    assert report[0]["ok"] is False


def test_repair_turns_an_interrupted_recording_into_a_valid_episode(tmp_path):
    d = tmp_path / "ds"
    write(d, T=5)
    tmp = interrupted(d)
    assert cli("validate", d).returncode == 1
    proc = cli("repair", d)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kept 30 rows, dropped 0" in proc.stdout
    assert not tmp.exists()
    assert cli("validate", d).returncode == 0
    repaired = list_episodes(d)[-1]
    assert load_episode(repaired, ["qpos"])["observations/qpos"][:, 0].tolist() == [
        float(i) for i in range(30)
    ]
    again = cli("repair", d)  # nothing left to do: every file reported as fine
    assert again.returncode == 0
    assert again.stdout.count("no defects") == 2


def test_repair_failure_has_a_nonzero_exit(tmp_path):
    (tmp_path / "episode_0.hdf5.tmp").write_bytes(b"garbage")
    proc = cli("repair", tmp_path)
    assert proc.returncode == 1 and "cannot open" in proc.stdout


def test_convert_to_npz_lerobot_and_back(dataset, tmp_path):
    assert cli("convert", dataset, tmp_path / "npz", "--to", "npz").returncode == 0
    proc = cli("convert", tmp_path / "npz", tmp_path / "h5", "--to", "hdf5", "--no-compress")
    assert proc.returncode == 0, proc.stderr
    assert cli("validate", tmp_path / "h5").returncode == 0
    a = load_episode(dataset / "episode_0.hdf5")
    b = load_episode(tmp_path / "h5" / "episode_0.hdf5")
    np.testing.assert_array_equal(a["action"], b["action"])
    proc = cli("convert", dataset, tmp_path / "lr", "--to", "lerobot")
    assert proc.returncode == 0, proc.stderr
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["total_frames"] == 32
    proc = cli("convert", dataset, tmp_path / "lr", "--to", "lerobot")  # not empty: refused
    assert proc.returncode == 1 and "not empty" in proc.stderr
