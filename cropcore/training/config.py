"""Training configuration: :class:`TrainConfig`, read from ``configs/<name>.yaml`` by :func:`load_config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cropcore.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """A training run, as read from YAML (paths relative to the sample-data directory)."""

    name: str
    model: str
    model_kwargs: dict[str, Any]
    data: dict[str, Any]
    optim: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    trainer: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    output: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)  # {"precision": kept pixels' target precision}
    init: str | None = None  # pretrained weights (in the models folder) the network starts from


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config; unknown or missing keys raise :class:`ConfigError`."""
    raw = yaml.safe_load(Path(path).read_text())
    try:
        return TrainConfig(**raw)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
