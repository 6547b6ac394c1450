"""Training loop for ``diffusion`` | ``diffog`` | ``leto`` (see :mod:`diffog_ros.learning.jobs`).

- Deterministic: seeds for torch / numpy / random; batches are drawn by :class:`StepBatchSampler`
  from (seed, step) alone, so a resumed run sees the same batches as an uninterrupted one.
- Progress bar (tqdm, rank 0), TensorBoard scalars in ``<out>/tb`` (losses, learning rate,
  gradient norm, step time, and for DiffOG / LeTO the QP solve time and bound activity).
- Checkpoints in ``<out>/checkpoints``: ``last`` (with the resume state), ``best`` (lowest
  validation loss, or training loss without a validation split) and periodic ``step_<N>``.
- CPU by default, CUDA when present (``device: auto``); multi-process DDP under ``torchrun``
  (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from diffog_ros.learning.checkpoint import (
    CheckpointError,
    flatten_optimizer,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
    unflatten_optimizer,
)
from diffog_ros.learning.config import load_train_config
from diffog_ros.learning.jobs import JOBS, Job

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistInfo:
        return cls(
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)),
        )


def pick_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{dist.local_rank}"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------- sampling
class StepBatchSampler:
    """Batch indices as a pure function of (seed, step, rank).

    The global batch of step s covers positions [s*B*W, (s+1)*B*W) of an endless sequence of
    per-epoch permutations (epoch e uses ``randperm(N)`` seeded by ``seed + e``); rank r takes
    its slice of B.  Iterating starts at ``start_step``.
    """

    def __init__(
        self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1, start_step: int = 0
    ):
        if n < 1:
            raise ValueError("the training set is empty")
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.start_step = start_step
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        first = (step * self.world + self.rank) * self.batch
        return [int(self._perm(p // self.n)[p % self.n]) for p in range(first, first + self.batch)]

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            yield self.indices(step)
            step += 1


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


# ---------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of the weights (decay warmed up as min(d, (1+s)/(10+s)))."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)


# ---------------------------------------------------------------------------------- schedule
def lr_lambda(cfg: Mapping[str, Any], max_steps: int):
    warm = int(cfg.get("warmup_steps", 0))
    cosine = cfg["lr_schedule"] == "cosine"

    def fn(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warm) / max(1, max_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


# ---------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    loss_module: nn.Module, dataset: Dataset, cfg: Mapping[str, Any], device: torch.device
) -> float:
    """Mean loss over ``val_batches`` fixed batches (its own seeded RNG; training RNG untouched)."""
    was_training = loss_module.training
    loss_module.eval()
    sampler = StepBatchSampler(len(dataset), cfg["batch_size"], cfg["seed"] + 7919)
    losses = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg["seed"] + 7919)
        for i in range(
            min(cfg["val_batches"], max(1, math.ceil(len(dataset) / cfg["batch_size"])))
        ):
            batch = default_collate([dataset[j] for j in sampler.indices(i)])
            loss, _ = loss_module(to_device(batch, device))
            losses.append(float(loss))
    loss_module.train(was_training)
    return float(np.mean(losses))


# ---------------------------------------------------------------------------------- checkpoints
def _weights(job: Job, ema: EMA | None) -> dict[str, torch.Tensor]:
    return ema.shadow if ema is not None else job.net.state_dict()


def _save(
    job: Job,
    directory: Path,
    step: int,
    metrics: Mapping[str, float],
    ema: EMA | None,
    resume_state: tuple[dict, dict] | None,
    dist: DistInfo,
) -> None:
    meta = dict(job.meta)
    meta["training"] = dict(meta["training"], step=step, world_size=dist.world)
    meta["metrics"] = {k: float(v) for k, v in metrics.items()}
    save_checkpoint(directory, meta, _weights(job, ema), resume_state)


def _resume_state(
    job: Job, opt, sched, step: int, best: float, ema: EMA | None
) -> tuple[dict, dict]:
    opt_json, opt_tensors = flatten_optimizer(opt.state_dict()) if opt is not None else ({}, {})
    tensors = {f"net.{k}": v for k, v in job.net.state_dict().items()}
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    state = {
        "step": step,
        "best": best if math.isfinite(best) else None,
        "scheduler_last_epoch": sched.last_epoch if sched is not None else 0,
        "optimizer": opt_json,
        "ema": ema is not None,
        "data_hash": job.meta["training"]["data_hash"],
    }
    return state, tensors


def _restore(job: Job, path: Path, opt, sched, ema: EMA | None) -> tuple[int, float]:
    meta, ema_weights = load_checkpoint(path, kind=job.kind)
    state, tensors = load_train_state(path)
    if state.get("data_hash") != job.meta["training"]["data_hash"]:
        raise CheckpointError(
            f"cannot resume from {path}: the training data changed since it was written "
            f"({state.get('data_hash')} != {job.meta['training']['data_hash']})"
        )
    if meta.get("model") != job.meta.get("model"):
        raise CheckpointError(f"cannot resume from {path}: the model configuration differs")
    net_state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
    try:
        job.net.load_state_dict(net_state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"cannot resume from {path}: {exc}") from exc
    if opt is not None:
        opt.load_state_dict(unflatten_optimizer(state["optimizer"], tensors))
        sched.last_epoch = int(state["scheduler_last_epoch"])
        sched._last_lr = [g["lr"] for g in opt.param_groups]  # noqa: SLF001 - keep get_last_lr() in sync
    if ema is not None:
        ema.shadow = {k: v.clone() for k, v in ema_weights.items()}
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    best = state.get("best")
    return int(state["step"]), (math.inf if best is None else float(best))


def _prune_periodic(ckpt_dir: Path, keep: int) -> None:
    steps = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir())
    for p in steps[: max(0, len(steps) - keep)]:
        shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------- main entry
def train(
    kind: str,
    data_dir: str | Path,
    out_dir: str | Path,
    config: str | Path | Mapping[str, Any] | None = None,
    base: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Train a model and return the path of its ``best`` checkpoint."""
    dist = DistInfo.from_env()
    cfg = load_train_config(kind, config, overrides)
    if max_steps is not None:
        cfg["max_steps"] = int(max_steps)
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    device = pick_device(cfg["device"], dist)
    if dist.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    try:
        return _run(kind, cfg, Path(data_dir), Path(out_dir), base, resume, device, dist, progress)
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(kind, cfg, data_dir, out_dir, base, resume, device, dist: DistInfo, progress) -> Path:
    seed_everything(int(cfg["seed"]) + dist.rank)
    if cfg["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
    job = JOBS[kind](cfg, data_dir, base)
    job.net.to(device)
    job.loss_module.to(device).train()
    ckpt_dir = out_dir / "checkpoints"
    if dist.main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    max_steps = int(cfg["max_steps"])
    params = [p for p in job.loss_module.parameters() if p.requires_grad]

    if not params:  # e.g. the static-Q DiffOG ablation: nothing to learn
        LOG.info("%s has no trainable parameters; writing its checkpoint directly", kind)
        if dist.main:
            metrics = {"train_loss": evaluate(job.loss_module, job.train_set, cfg, device)}
            if job.val_set is not None:
                metrics["val_loss"] = evaluate(job.loss_module, job.val_set, cfg, device)
            for name in ("last", "best"):
                _save(job, ckpt_dir / name, 0, metrics, None, None, dist)
        return ckpt_dir / "best"

    opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, max_steps))
    ema = EMA(job.net, float(cfg["ema_decay"])) if cfg["ema_decay"] > 0 else None
    start, best = 0, math.inf
    if resume:
        if not (ckpt_dir / "last").is_dir():
            raise CheckpointError(f"--resume: no checkpoint at {ckpt_dir / 'last'}")
        start, best = _restore(job, ckpt_dir / "last", opt, sched, ema)
        LOG.info("resumed from %s at step %d", ckpt_dir / "last", start)
    if dist.enabled:
        torch.manual_seed(int(cfg["seed"]) + 104729 * (start + 1) + dist.rank)
    model = job.loss_module
    if dist.enabled:
        model = nn.parallel.DistributedDataParallel(
            job.loss_module, device_ids=[device.index] if device.type == "cuda" else None
        )

    sampler = StepBatchSampler(
        len(job.train_set), int(cfg["batch_size"]), int(cfg["seed"]), dist.rank, dist.world, start
    )
    loader = DataLoader(
        job.train_set,
        batch_sampler=sampler,
        num_workers=int(cfg["num_workers"]),
        collate_fn=default_collate,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(int(cfg["seed"])),  # leaves the global RNG alone
    )
    writer = None
    if dist.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"), purge_step=start)
    from tqdm import tqdm

    bar = tqdm(
        total=max_steps, initial=start, desc=f"train {kind}", disable=not (dist.main and progress)
    )
    window: dict[str, list[float]] = {}  # stats since the last log line
    ckpt_losses: list[float] = []  # training losses since the last checkpoint
    batches = iter(loader)
    step = start
    try:
        while step < max_steps:
            t0 = time.perf_counter()
            batch = to_device(next(batches), device)
            loss, stats = model(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, float(cfg["grad_clip"]) or math.inf)
            opt.step()
            sched.step()
            if ema is not None:
                ema.update(job.net, step)
            step += 1
            stats = dict(stats, **{"train/loss": loss.item(), "train/grad_norm": gnorm.item()})
            stats["time/step_ms"] = 1e3 * (time.perf_counter() - t0)
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            ckpt_losses.append(stats["train/loss"])
            bar.update(1)
            if step % int(cfg["log_every"]) == 0 or step == max_steps:
                means = {k: float(np.mean(v)) for k, v in window.items()}
                if writer is not None:
                    for k, v in means.items():
                        writer.add_scalar(k, v, step)
                    writer.add_scalar("train/lr", sched.get_last_lr()[0], step)
                bar.set_postfix(loss=f"{means['train/loss']:.4g}")
                window = {}
            if step % int(cfg["checkpoint_every"]) == 0 or step == max_steps:
                train_loss = float(np.mean(ckpt_losses))
                best = _checkpoint(
                    job,
                    cfg,
                    ckpt_dir,
                    step,
                    best,
                    train_loss,
                    opt,
                    sched,
                    ema,
                    device,
                    writer,
                    dist,
                )
                ckpt_losses = []
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return ckpt_dir / "best"


def _checkpoint(
    job, cfg, ckpt_dir, step, best, train_loss, opt, sched, ema, device, writer, dist
) -> float:
    """Write last / periodic / best on rank 0; all ranks wait for it."""
    if dist.main:
        metrics = {"train_loss": train_loss}
        score = train_loss
        if job.val_set is not None:
            eval_net = job.loss_module
            if ema is not None:  # validate the weights that are saved for inference
                backup = {k: v.clone() for k, v in job.net.state_dict().items()}
                job.net.load_state_dict(ema.shadow)
            metrics["val_loss"] = score = evaluate(eval_net, job.val_set, cfg, device)
            if ema is not None:
                job.net.load_state_dict(backup)
            if writer is not None:
                writer.add_scalar("val/loss", metrics["val_loss"], step)
        improved = math.isfinite(score) and score < best
        LOG.info("step %d: %s", step, ", ".join(f"{k}={v:.5g}" for k, v in metrics.items()))
        try:  # each directory is replaced atomically: a failed write leaves the previous one intact
            if improved or not (ckpt_dir / "best").is_dir():
                _save(job, ckpt_dir / "best", step, metrics, ema, None, dist)
                best = score if improved else best
            state = _resume_state(job, opt, sched, step, best, ema)
            _save(job, ckpt_dir / "last", step, metrics, ema, state, dist)
            if int(cfg["keep_periodic"]) > 0:
                _save(job, ckpt_dir / f"step_{step:08d}", step, metrics, ema, None, dist)
                _prune_periodic(ckpt_dir, int(cfg["keep_periodic"]))
        except OSError as exc:  # e.g. a full disk
            if step >= int(cfg["max_steps"]):
                raise
            LOG.error(
                "step %d: checkpoints not written (%s); training continues, earlier ones are intact",
                step,
                exc,
            )
    if dist.enabled:  # every rank continues with rank 0's best score (and waits for its files)
        t = torch.tensor([best], dtype=torch.float64, device=device)
        torch.distributed.broadcast(t, src=0)
        best = float(t.item())
    return best
