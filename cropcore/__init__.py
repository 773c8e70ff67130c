"""cropcore: crop-type mapping from Sentinel-2 time series.

Importing cropcore never imports streamlit; the dashboard lives in ``cropcore.ui`` and ``pages/``.
"""

from cropcore.errors import (
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
