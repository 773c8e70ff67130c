"""cropcore: crop-type mapping from Sentinel-2 time series.

Importing cropcore never imports streamlit; the dashboard lives in ``cropcore.ui`` and ``pages/``.
"""

import warnings

# codecarbon needs the `pynvml` package, now a shim that warns on every `import pynvml` (torch imports it at
# start-up); the module itself comes from nvidia-ml-py, so the warning asks users for nothing: keep stderr clean.
warnings.filterwarnings("ignore", message="The pynvml package is deprecated", category=FutureWarning)

from cropcore.errors import (  # noqa: E402
    CatalogUnavailableError,
    ConfigError,
    CropcoreError,
    DataDirError,
    InvalidAOIError,
    InvalidDateRangeError,
    NoItemsFoundError,
    ServiceError,
)

__version__ = "0.1.0"

__all__ = [
    "CatalogUnavailableError",
    "ConfigError",
    "CropcoreError",
    "DataDirError",
    "InvalidAOIError",
    "InvalidDateRangeError",
    "NoItemsFoundError",
    "ServiceError",
    "__version__",
]
