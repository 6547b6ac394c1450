"""Reading API for the learning code, conversions (npz, HDF5 re-encode, LeRobot-like) and MCAP."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from data.episodes import write
from diffog_ros.data.convert import convert
from diffog_ros.data.dataset import (
    episode_attrs,
    episode_length,
    list_episodes,
    load_episode,
    open_episode,
)
from diffog_ros.data.validate import validate_dataset


def test_list_episodes_sorts_numerically_and_skips_incomplete(tmp_path):
    for _ in range(3):
        write(tmp_path, T=3)
    (tmp_path / "episode_10.hdf5").write_bytes((tmp_path / "episode_2.hdf5").read_bytes())
    (tmp_path / "episode_11.hdf5.tmp").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    names = [p.name for p in list_episodes(tmp_path)]
    assert names == ["episode_0.hdf5", "episode_1.hdf5", "episode_2.hdf5", "episode_10.hdf5"]
    assert list_episodes(tmp_path, include_incomplete=True)[-1].name == "episode_11.hdf5.tmp"
    with pytest.raises(FileNotFoundError):
        list_episodes(tmp_path / "nope")


def test_load_episode_keys_aliases_and_lazy_reader(tmp_path):
    path = write(tmp_path, T=20, compress=True)
    data = load_episode(path, keys=["qpos", "/action", "images/cam_high"])
    assert set(data) == {"observations/qpos", "action", "observations/images/cam_high"}
    assert data["observations/images/cam_high"].shape == (20, 24, 32, 3)
    assert episode_length(path) == 20
    with open_episode(path) as ep:
        assert "qpos" in ep and "observations/effort" not in ep
        window = ep["action"][5:9]
        assert window.shape == (4, 6)
        np.testing.assert_array_equal(window, data["action"][5:9])
        np.testing.assert_array_equal(
            ep.frames("cam_high", 3, 5), data["observations/images/cam_high"][3:5]
        )
        with pytest.raises(KeyError, match="available"):
            ep["observations/effort"]
    attrs = episode_attrs(path)
    assert attrs["joint_names"][0] == "left_waist"
    assert attrs["camera_names"] == ["cam_high"]


def test_npz_round_trip_is_exact(tmp_path):
    src = tmp_path / "src"
    for seed in range(2):
        write(src, T=15, seed=seed)
    convert(src, tmp_path / "npz", "npz")
    meta = json.loads((tmp_path / "npz" / "meta.json").read_text())
    assert [e["length"] for e in meta["episodes"]] == [15, 15]
    with np.load(tmp_path / "npz" / "episode_1.npz") as z:
        np.testing.assert_array_equal(z["action"], load_episode(src / "episode_1.hdf5")["action"])
    back = convert(tmp_path / "npz", tmp_path / "back", "hdf5", compress=False)
    assert [p.name for p in back] == ["episode_0.hdf5", "episode_1.hdf5"]
    for a, b in zip(list_episodes(src), back, strict=True):
        da, db = load_episode(a), load_episode(b)
        assert set(da) == set(db)
        for key in da:
            np.testing.assert_array_equal(da[key], db[key], err_msg=key)
    assert all(r.ok for r in validate_dataset(tmp_path / "back"))


def test_hdf5_reencoding_toggles_compression(tmp_path):
    src = tmp_path / "src"
    write(src, T=10)
    convert(src, tmp_path / "jpeg", "hdf5", compress=True)
    attrs = episode_attrs(tmp_path / "jpeg" / "episode_0.hdf5")
    assert attrs["compress"] is True and attrs["task"] == "unit_test"
    frames = load_episode(tmp_path / "jpeg" / "episode_0.hdf5")["observations/images/cam_high"]
    original = load_episode(src / "episode_0.hdf5")["observations/images/cam_high"]
    assert np.abs(frames.astype(int) - original.astype(int)).mean() < 5
    with pytest.raises(ValueError, match="--compress"):
        convert(src, tmp_path / "none", "hdf5")
    with pytest.raises(FileExistsError):
        convert(src, tmp_path / "jpeg", "hdf5", compress=True)


def test_lerobot_like_export(tmp_path):
    src = tmp_path / "src"
    lengths = [12, 7]
    for seed, T in enumerate(lengths):
        write(src, T=T, seed=seed)
    convert(src, tmp_path / "lr", "lerobot")
    info = json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == sum(lengths)
    assert info["fps"] == 50.0
    assert info["features"]["observation.state"]["shape"] == [6]
    assert info["features"]["observation.images.cam_high"]["shape"] == [24, 32, 3]
    episodes = json.loads((tmp_path / "lr" / "meta" / "episodes.json").read_text())
    assert [e["length"] for e in episodes] == lengths
    with np.load(tmp_path / "lr" / "data" / "chunk-000" / "file-000.npz") as z:
        assert z["observation.state"].shape == (sum(lengths), 6)
        assert z["episode_index"].tolist() == [0] * 12 + [1] * 7
        assert z["index"].tolist() == list(range(sum(lengths)))
        first = load_episode(src / "episode_0.hdf5")
        np.testing.assert_allclose(z["action"][:12], first["action"], rtol=1e-6)
    video = (
        tmp_path / "lr" / "videos" / "observation.images.cam_high" / "chunk-000" / "file-000.mp4"
    )
    cap = cv2.VideoCapture(str(video))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == sum(lengths)
    stats = json.loads((tmp_path / "lr" / "meta" / "stats.json").read_text())
    assert stats["observation.state"]["count"] == [sum(lengths)]


def test_mcap_log_is_readable_as_ros2(tmp_path):
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from sensor_msgs.msg import JointState

    from diffog_ros.data.mcap_log import McapRawLog

    log = McapRawLog(tmp_path / "episode_0.mcap")
    log.add_channel("/joint_states", "sensor_msgs/msg/JointState")
    for i in range(3):
        msg = JointState(name=["a", "b"], position=[float(i), 2.0 * i])
        msg.header.stamp.sec = 100 + i
        log.write("/joint_states", rclpy_serialization.serialize_message(msg), i, i)
    assert log.close() == tmp_path / "episode_0.mcap"
    with open(tmp_path / "episode_0.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        decoded = [
            (ch.topic, m.position, m.header.stamp.sec)
            for _s, ch, _r, m in reader.iter_decoded_messages()
        ]
    assert decoded == [("/joint_states", [float(i), 2.0 * i], 100 + i) for i in range(3)]
