"""Loading learned trajectory-optimisation layers (DiffOG / LeTO heads) for deployment (no rclpy).

The trajectory-optimisation node only needs this small interface (:class:`TrajOptModel`)::

    model = load_trajopt_model(path, kind="diffog")   # raises ModelLoadError with the reason
    model.names        # action names, in the chunk's order (checked against joint_names)
    model.horizon      # T the layer was trained for
    model.action_dim   # D
    y = model.optimise(a, prev, spec)   # a [B, T, D] (DiffOG: raw chunk; LeTO: linear term e_t),
                                        # prev [B, D] or None, spec: the physical-unit TrajOptSpec
                                        # -> y [B, T, D], meeting spec's bounds (physical units)

Checkpoints are safetensors + JSON (never pickled). ``path`` is either a checkpoint directory
holding ``config.json`` and ``model.safetensors`` or the JSON metadata file itself (the weights are
then ``<stem>.safetensors`` next to it). The JSON must name the layer's ``kind``, ``action_names``,
``horizon`` and ``action_dim``; everything else is up to the builder.

Builders (the code that turns metadata + weights into a :class:`TrajOptModel`) are registered by
the learning package with :func:`register_model_builder`; importing ``diffog_ros.learning`` is
expected to register them. Until a builder exists for a kind, loading refuses with a clear reason.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "MODEL_KINDS",
    "ModelCache",
    "ModelLoadError",
    "ModelMeta",
    "TrajOptModel",
    "check_model_matches",
    "load_trajopt_model",
    "read_model_meta",
    "register_model_builder",
]

MODEL_KINDS = ("diffog", "leto")


class ModelLoadError(ValueError):
    """A checkpoint that cannot be used (missing, corrupt, wrong kind or dims, no builder)."""


@runtime_checkable
class TrajOptModel(Protocol):
    """A loaded learned trajectory-optimisation layer, ready for inference."""

    names: tuple[str, ...]
    horizon: int
    action_dim: int

    def optimise(self, a: Any, prev: Any, spec: Any) -> Any:
        """a [B, T, D], prev [B, D] or None, spec (physical units) -> y [B, T, D]."""
        ...


class ModelMeta(dict):
    """The checkpoint's JSON metadata, with the fields the node relies on validated."""

    @property
    def kind(self) -> str:
        return str(self["kind"])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self["action_names"])

    @property
    def horizon(self) -> int:
        return int(self["horizon"])

    @property
    def action_dim(self) -> int:
        return int(self["action_dim"])


Builder = Callable[[ModelMeta, Path], TrajOptModel]
_BUILDERS: dict[str, Builder] = {}


def register_model_builder(kind: str, builder: Builder) -> None:
    """Register ``builder(meta, weights_path) -> TrajOptModel`` for checkpoints of ``kind``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    _BUILDERS[kind] = builder


def _paths(path: str | Path) -> tuple[Path, Path]:
    """(metadata JSON, weights safetensors) for a checkpoint directory or JSON file."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p / "config.json", p / "model.safetensors"
    if p.suffix == ".safetensors":
        return p.with_suffix(".json"), p
    return p, p.with_suffix(".safetensors")


def _require(meta: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str, src: Path):
    if key not in meta:
        raise ModelLoadError(f"{src}: metadata has no {key!r}")
    if not check(meta[key]):
        raise ModelLoadError(f"{src}: {key!r} must be {what}, got {meta[key]!r}")


def read_model_meta(path: str | Path) -> tuple[ModelMeta, Path]:
    """Read and validate a checkpoint's JSON metadata; return it and the weights path.

    Raises:
        ModelLoadError: empty path, missing files, invalid JSON, or missing/ill-typed fields.
    """
    if not str(path).strip():
        raise ModelLoadError("model_path is empty")
    meta_path, weights = _paths(path)
    if not meta_path.is_file():
        raise ModelLoadError(f"checkpoint metadata not found: {meta_path}")
    if not weights.is_file():
        raise ModelLoadError(f"checkpoint weights not found: {weights}")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{meta_path}: metadata must be a JSON object")
    _require(raw, "kind", lambda v: v in MODEL_KINDS, f"one of {MODEL_KINDS}", meta_path)
    _require(
        raw,
        "action_names",
        lambda v: isinstance(v, list) and v and all(isinstance(s, str) and s for s in v),
        "a non-empty list of names",
        meta_path,
    )
    for key in ("horizon", "action_dim"):
        _require(raw, key, lambda v: isinstance(v, int) and v >= 1, "an int >= 1", meta_path)
    meta = ModelMeta(raw)
    if len(meta.names) != meta.action_dim or len(set(meta.names)) != meta.action_dim:
        raise ModelLoadError(
            f"{meta_path}: action_names must be {meta.action_dim} distinct names, got {list(meta.names)}"
        )
    return meta, weights


# Imported on the first load that finds no builder: it registers the builders (learning issue).
BUILDER_MODULE: str | None = "diffog_ros.learning"


def load_trajopt_model(
    path: str | Path, kind: str, expected_names: Sequence[str] | None = None
) -> TrajOptModel:
    """Load the checkpoint at ``path`` as a ``kind`` layer (``diffog`` or ``leto``).

    ``expected_names`` (e.g. the node's joint_names) are checked against the metadata before
    anything heavy is built.

    Raises:
        ModelLoadError: with the reason; the caller keeps whatever it had before.
    """
    if kind not in MODEL_KINDS:
        raise ModelLoadError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    meta, weights = read_model_meta(path)
    if meta.kind != kind:
        raise ModelLoadError(
            f"{path} is a {meta.kind!r} checkpoint, method {kind!r} needs {kind!r}"
        )
    if expected_names is not None and meta.names != tuple(expected_names):
        raise ModelLoadError(
            f"checkpoint action names {list(meta.names)} differ from joint_names {list(expected_names)}"
        )
    if kind not in _BUILDERS and BUILDER_MODULE:
        try:  # the learning package registers its builders on import
            importlib.import_module(BUILDER_MODULE)
        except ImportError:
            pass
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ModelLoadError(f"{kind} checkpoints: loader not available in this build ({path})")
    try:
        model = builder(meta, weights)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"{path}: cannot build the {kind} layer: {exc}") from exc
    if tuple(model.names) != meta.names or (model.horizon, model.action_dim) != (
        meta.horizon,
        meta.action_dim,
    ):
        raise ModelLoadError(f"{path}: the built layer does not match its metadata")
    return model


def check_model_matches(model: TrajOptModel, joint_names: tuple[str, ...]) -> None:
    """Raise ModelLoadError unless the model's action names are exactly ``joint_names``."""
    if tuple(model.names) != tuple(joint_names):
        raise ModelLoadError(
            f"checkpoint action names {list(model.names)} differ from joint_names {list(joint_names)}"
        )


class ModelCache:
    """Keeps the last loaded model; reloads only when kind, path or file modification time change."""

    def __init__(self, loader: Callable[..., TrajOptModel] | None = None) -> None:
        self._loader = loader or load_trajopt_model
        self._key: tuple | None = None
        self._model: TrajOptModel | None = None

    @staticmethod
    def _key_for(path: str, kind: str) -> tuple:
        meta_path, weights = _paths(path)
        stamps = tuple(p.stat().st_mtime_ns if p.is_file() else None for p in (meta_path, weights))
        return (kind, str(Path(path).expanduser().resolve()), stamps)

    def get(self, path: str, kind: str, joint_names: tuple[str, ...]) -> TrajOptModel:
        """The model at ``path`` checked against ``joint_names`` (raises ModelLoadError)."""
        key = self._key_for(path, kind)
        if key != self._key or self._model is None:
            model = self._loader(path, kind, joint_names)
            self._key, self._model = key, model
        check_model_matches(self._model, joint_names)
        return self._model
