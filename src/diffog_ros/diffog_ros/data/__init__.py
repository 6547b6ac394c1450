"""Episode datasets (no rclpy): the ALOHA-layout HDF5 format and the tools around it.

* :mod:`.episode` -- the schema (dataset paths, dtypes, attributes); :mod:`.images` -- JPEG frames.
* :mod:`.writer` -- crash-safe incremental writer (``EpisodeWriter``) and ``write_episode``.
* :mod:`.dataset` -- reading back: ``list_episodes``, ``load_episode``, ``episode_attrs``,
  ``open_episode`` (lazy).
* :mod:`.validate`, :mod:`.repair`, :mod:`.convert` -- ``diffog-ros data validate|repair|convert``.
* :mod:`.recorder` -- the recorder node's core (alignment, chunk scheduling, session, sampler).
* :mod:`.mcap_log` -- raw MCAP log (rosbag2 storage format).
"""
