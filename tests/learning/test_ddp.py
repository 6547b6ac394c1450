"""DDP smoke test: torchrun with two CPU processes (gloo) trains the DiffOG layer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffog_ros.learning.checkpoint import load_checkpoint
from diffog_ros.learning.train import train

CONFIG = """device: cpu
num_threads: 1
batch_size: {batch}
lr: 0.01
warmup_steps: 0
lr_schedule: constant
checkpoint_every: 3
keep_periodic: 0
val_fraction: 0.0
horizon: 4
bounds: {{exclude_names: [grip]}}
model: {{d_model: 16, n_heads: 2, n_layers: 1, dim_feedforward: 16, dropout: 0.0}}
"""


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_with_the_global_batch(dataset, tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(CONFIG.format(batch=4))
    torchrun = Path(sys.executable).parent / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        str(torchrun),
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "diffog_ros.cli.train",
        "diffog",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "ddp"),
        "--config",
        str(cfg),
        "--max-steps",
        "3",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta, ddp_weights = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last")
    assert meta["training"]["world_size"] == 2 and meta["training"]["step"] == 3

    # gradients averaged over 2 x 4 samples == one process on the same 8 samples per step
    weights = {}
    for batch in (8, 4):
        single_cfg = tmp_path / f"single{batch}.yaml"
        single_cfg.write_text(CONFIG.format(batch=batch))
        train(
            "diffog", dataset, tmp_path / f"single{batch}", single_cfg, max_steps=3, progress=False
        )
        weights[batch] = load_checkpoint(tmp_path / f"single{batch}" / "checkpoints" / "last")[1]
    for k, v in weights[8].items():
        torch.testing.assert_close(
            ddp_weights[k], v, rtol=1e-3, atol=2e-4
        )  # Adam amplifies rounding
    # ... and not what rank 0 alone (its 4 samples, no averaging) would have learned
    assert max((ddp_weights[k] - v).abs().max().item() for k, v in weights[4].items()) > 5e-3
