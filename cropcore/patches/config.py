"""Patch-classifier training configs (``configs/patch_*.yaml``): :class:`PatchConfig`, read by
:func:`load_patch_config`; unknown or missing keys are refused, as for the time-series configs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from cropcore.errors import ConfigError

TASKS = ("multilabel", "binary")
_SECTIONS = {
    "data": {"source", "folds", "max_group", "gap", "batch_size", "num_workers"},
    "optim": {"base_lr", "reference_batch", "momentum", "weight_decay", "warmup_epochs", "milestones", "gamma"},
    "augment": {"flips", "rot90", "mixup_alpha", "cutmix_alpha"},
    "trainer": {"max_epochs", "accelerator", "devices", "threads"},
}


@dataclass(frozen=True)
class PatchConfig:
    """A patch-classifier run: ``task`` is ``multilabel`` (19 BigEarthNet classes) or ``binary`` (agricultural?).

    ``data.source`` is relative to the data directory; ``data.folds`` cross-validation folds by place
    (:mod:`cropcore.patches.splits`); ``output`` the shipped checkpoint (the model of fold 0, whose test fold
    it holds out).
    """

    name: str
    task: str
    model: str
    model_kwargs: dict[str, Any]
    data: dict[str, Any]
    optim: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str | None = None
    store_fp16: bool = False  # halve the shipped checkpoint (weights stored as fp16, computed in fp32)


def is_patch_config(path: str | Path) -> bool:
    """Whether the YAML at ``path`` is a patch-classifier config (it has a top-level ``task``)."""
    raw = yaml.safe_load(Path(path).read_text())
    return isinstance(raw, dict) and "task" in raw


def load_patch_config(path: str | Path) -> PatchConfig:
    """Read a patch config; unknown keys (top level or in a section), a missing key or an unknown task raise
    :class:`ConfigError`."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a YAML mapping")
    unknown = set(raw) - {f.name for f in fields(PatchConfig)}
    for section, allowed in _SECTIONS.items():
        unknown |= {f"{section}.{k}" for k in set(raw.get(section) or {}) - allowed}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    try:
        config = PatchConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if config.task not in TASKS:
        raise ConfigError(f"{path}: task must be one of {TASKS}, got {config.task!r}")
    if "source" not in config.data:
        raise ConfigError(f"{path}: data.source (npz or patch folders, under the data directory) is missing")
    return config
