"""Episode writer: layout, dtypes, auto-indexing, crash safety and full disks (real HDF5 files)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from data.episodes import ATTRS, JOINTS, arrays, layout, tiny_tmpfs, write
from diffog_ros.data.dataset import episode_attrs, list_episodes, load_episode
from diffog_ros.data.episode import EpisodeFormatError, EpisodeLayout, Sample
from diffog_ros.data.repair import repair_episode
from diffog_ros.data.validate import validate_episode
from diffog_ros.data.writer import DiskFullError, EpisodeWriter, WriterError, write_episode


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_raw_episode_round_trip_with_aloha_layout(tmp_path):
    lay = layout()
    data, ts = arrays(lay, 40)
    path = write_episode(tmp_path, lay, data, ts, ATTRS, fps=50.0)
    assert path.name == "episode_0.hdf5"
    with h5py.File(path, "r") as f:
        assert f["observations/qpos"].dtype == np.float64
        assert f["observations/qvel"].dtype == np.float64
        assert f["action"].dtype == np.float64
        assert f["timestamps"].dtype == np.float64
        assert f["observations/images/cam_high"].dtype == np.uint8
        assert f["observations/images/cam_high"].shape == (40, 24, 32, 3)
        assert f["valid/qpos"].dtype == np.bool_
        assert bool(f.attrs["sim"]) is True
        assert bool(f.attrs["compress"]) is False
        assert f.attrs["fps"] == 50.0
        assert json.loads(f.attrs["joint_names"]) == JOINTS
    ep = load_episode(path)
    np.testing.assert_array_equal(ep["observations/qpos"], data["qpos"])
    np.testing.assert_array_equal(ep["action"], data["action"])
    np.testing.assert_array_equal(ep["observations/images/cam_high"], data["cam_high"])
    np.testing.assert_array_equal(ep["timestamps"], ts)
    attrs = episode_attrs(path)
    assert attrs["trajopt_params"] == ATTRS["trajopt_params"]
    assert attrs["num_samples"] == 40
    assert attrs["status"] == "complete"
    assert attrs["achieved_rate_hz"] == pytest.approx(39 / (ts[-1] - ts[0]))
    assert attrs["low_rate"] is False
    assert validate_episode(path).ok


def test_compressed_images_are_padded_jpeg_like_aloha(tmp_path):
    lay = layout(cams={"cam_high": (24, 32), "cam_low": (16, 20)}, compress=True)
    data, ts = arrays(lay, 12)
    path = write_episode(tmp_path, lay, data, ts, ATTRS, fps=50.0)
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["compress"]) is True
        cl = f["compress_len"][()]
        assert cl.shape == (2, 12)
        rows = f["observations/images/cam_low"][()]
        assert rows.ndim == 2 and rows.dtype == np.uint8
        assert rows.shape[1] == cl[1].max()  # padded to the longest frame
        # ALOHA's reader: cv2.imdecode on the padded row, no length needed.
        decoded = cv2.imdecode(rows[5], 1)
    assert decoded.shape == (16, 20, 3)
    assert np.abs(decoded.astype(int) - data["cam_low"][5]).max() < 40
    ep = load_episode(path, keys=["images/cam_high"])
    frames = ep["observations/images/cam_high"]
    assert frames.shape == (12, 24, 32, 3)
    assert np.abs(frames.astype(int) - data["cam_high"].astype(int)).mean() < 5


def test_missing_samples_are_nan_and_masked(tmp_path):
    lay = EpisodeLayout(JOINTS, ("qpos", "action"), {"cam_high": (4, 4)})
    w = EpisodeWriter(tmp_path, lay, ATTRS, fps=10)
    q = np.arange(6.0)
    img = np.full((4, 4, 3), 9, np.uint8)
    w.append(Sample(1.0, {"qpos": q, "action": q, "cam_high": img}))
    w.append(Sample(1.1, {"qpos": None, "action": q, "cam_high": None}))
    path = w.close()
    ep = load_episode(path)
    assert np.all(np.isnan(ep["observations/qpos"][1]))
    assert ep["valid/qpos"].tolist() == [True, False]
    assert ep["valid/cam_high"].tolist() == [True, False]
    assert ep["observations/images/cam_high"][1].max() == 0
    assert validate_episode(path).ok


def test_bad_rows_are_refused_and_nothing_is_written(tmp_path):
    lay = EpisodeLayout(JOINTS, ("qpos",), {})
    w = EpisodeWriter(tmp_path, lay, ATTRS, fps=10)
    with pytest.raises(ValueError, match="expected 6 values"):
        w.append(Sample(1.0, {"qpos": np.zeros(5)}))
    with pytest.raises(ValueError, match="non-finite"):
        w.append(Sample(1.0, {"qpos": np.array([np.nan] * 6)}))
    with pytest.raises(ValueError, match="timestamp"):
        w.append(Sample(float("inf"), {"qpos": np.zeros(6)}))
    assert w.rows_pending == 0
    assert w.close() is None  # no rows: nothing published
    assert list(tmp_path.iterdir()) == []


def test_layout_validation():
    with pytest.raises(EpisodeFormatError, match="unique"):
        EpisodeLayout(["a", "a"])
    with pytest.raises(EpisodeFormatError, match="unknown float streams"):
        EpisodeLayout(["a"], ("qpos", "bogus"))
    with pytest.raises(EpisodeFormatError, match="image size"):
        EpisodeLayout(["a"], ("qpos",), {"cam": (0, 4)})


def test_auto_index_never_overwrites_and_resumes(tmp_path):
    (tmp_path / "episode_0.hdf5").write_bytes(b"someone else's file")
    (tmp_path / "episode_4.hdf5.tmp").write_bytes(b"an interrupted recording")
    before = {p.name: sha(p) for p in tmp_path.iterdir()}
    first = write(tmp_path, T=5)
    second = write(tmp_path, T=5)
    assert (first.name, second.name) == ("episode_5.hdf5", "episode_6.hdf5")
    for name, digest in before.items():
        assert sha(tmp_path / name) == digest
    assert [p.name for p in list_episodes(tmp_path)] == [
        "episode_0.hdf5",
        "episode_5.hdf5",
        "episode_6.hdf5",
    ]


def test_publish_takes_the_next_index_when_the_name_appears(tmp_path):
    lay = EpisodeLayout(JOINTS, ("qpos",), {})
    w = EpisodeWriter(tmp_path, lay, ATTRS, fps=10)
    w.append(Sample(1.0, {"qpos": np.zeros(6)}))
    (tmp_path / "episode_0.hdf5").write_bytes(b"raced")  # another process took the name
    path = w.close()
    assert path.name == "episode_1.hdf5"
    assert (tmp_path / "episode_0.hdf5").read_bytes() == b"raced"
    assert not w.tmp_path.exists()


def test_discard_removes_the_temporary_file(tmp_path):
    lay = EpisodeLayout(JOINTS, ("qpos",), {})
    w = EpisodeWriter(tmp_path, lay, ATTRS, fps=10)
    w.append(Sample(1.0, {"qpos": np.zeros(6)}))
    w.flush()
    assert w.tmp_path.exists()
    w.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WriterError):
        w.append(Sample(2.0, {"qpos": np.zeros(6)}))


_CRASH_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from diffog_ros.data.episode import EpisodeLayout, Sample
    from diffog_ros.data.writer import EpisodeWriter
    lay = EpisodeLayout({joints!r}, ("qpos", "action"), {{"cam_high": (24, 32)}}, compress={compress})
    w = EpisodeWriter(Path(sys.argv[1]), lay, {{"robot": "r"}}, fps=100)
    i = 0
    while True:
        img = np.full((24, 32, 3), i % 256, np.uint8)
        w.append(Sample(1.7e9 + i / 100, {{"qpos": np.full(6, float(i)), "action": np.zeros(6), "cam_high": img}}))
        i += 1
        if i % 10 == 0:
            w.flush()
            print("COMMITTED", w.rows_written, flush=True)
        time.sleep(0.002)
    """
)


@pytest.mark.parametrize("compress", [False, True])
def test_sigkill_loses_only_unflushed_rows_and_nothing_earlier(tmp_path, compress):
    earlier = write(tmp_path, T=20)
    digest = sha(earlier)
    script = _CRASH_WRITER.format(joints=JOINTS, compress=compress)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    committed = 0
    try:
        deadline = time.monotonic() + 60
        while committed < 150 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("COMMITTED"):
                committed = int(line.split()[1])
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert committed >= 150
    tmp = tmp_path / "episode_1.hdf5.tmp"
    assert tmp.exists() and not (tmp_path / "episode_1.hdf5").exists()
    assert not validate_episode(tmp).ok  # an interrupted file is reported, not trusted
    result = repair_episode(tmp)
    assert result.action == "repaired"
    assert result.rows_kept >= committed  # every flushed row survived
    ep = load_episode(result.output)
    assert ep["observations/qpos"][:, 0].tolist() == [float(i) for i in range(result.rows_kept)]
    assert validate_episode(result.output, decode_images="all").ok
    assert episode_attrs(result.output)["status"] == "repaired"
    assert sha(earlier) == digest
    assert not tmp.exists()


def test_full_disk_stops_cleanly_and_keeps_what_was_written(tmp_path):
    with tiny_tmpfs(tmp_path / "disk") as disk:
        earlier = write(disk, T=10)
        digest = sha(earlier)
        lay = EpisodeLayout(JOINTS, ("qpos",), {"cam_high": (48, 64)})
        w = EpisodeWriter(disk, lay, ATTRS, fps=50, min_free_bytes=64 * 1024)
        img = np.zeros((48, 64, 3), np.uint8)
        written = 0
        with pytest.raises(DiskFullError, match="disk full") as info:
            for i in range(100000):
                w.append(Sample(1.7e9 + i / 50, {"qpos": np.full(6, float(i)), "cam_high": img}))
                if i % 10 == 9:
                    w.flush()
                    written = w.rows_written
        assert "recording stopped after" in str(info.value)
        assert w.rows_written >= written > 0  # the last flush wrote the rows that still fit
        written = w.rows_written
        path = w.close()
        assert path is not None and path.name == "episode_1.hdf5"
        ep = load_episode(path)
        assert ep["observations/qpos"][:, 0].tolist() == [float(i) for i in range(written)]
        assert validate_episode(path).ok
        assert "disk full" in episode_attrs(path)["stop_reason"]
        assert sha(earlier) == digest


_ENOSPC_WRITER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from pathlib import Path
    import diffog_ros.data.writer as wmod
    from diffog_ros.data.episode import EpisodeLayout, Sample
    wmod.free_bytes = lambda d: 10**12  # pretend there is space: HDF5 itself hits ENOSPC
    lay = EpisodeLayout({joints!r}, ("qpos",), {{"cam_high": (48, 64)}})
    w = wmod.EpisodeWriter(Path(sys.argv[1]), lay, {{"robot": "r"}}, fps=50)
    img = np.zeros((48, 64, 3), np.uint8)
    out = {{}}
    try:
        for i in range(100000):
            w.append(Sample(1.7e9 + i / 50, {{"qpos": np.full(6, float(i)), "cam_high": img}}))
            if i % 10 == 9:
                w.flush()
    except wmod.DiskFullError as exc:
        out = {{"error": str(exc), "rows": w.rows_written, "poisoned": wmod.writer_poisoned()}}
    try:
        w.close()
    except wmod.WriterError as exc:
        out["close"] = str(exc)
    print(json.dumps(out), flush=True)
    os._exit(0)
    """
)


def test_enospc_inside_hdf5_is_reported_and_repairable(tmp_path):
    with tiny_tmpfs(tmp_path / "disk") as disk:
        proc = subprocess.run(
            [sys.executable, "-c", _ENOSPC_WRITER.format(joints=JOINTS), str(disk)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert "no space left on device" in out["error"]
        assert out["poisoned"] is True
        assert "data repair" in out["close"]
        result = repair_episode(disk / "episode_0.hdf5.tmp", out_dir=tmp_path / "repaired")
    assert result.rows_kept >= out["rows"] > 0
    ep = load_episode(result.output)
    assert ep["observations/qpos"][:, 0].tolist() == [float(i) for i in range(result.rows_kept)]
