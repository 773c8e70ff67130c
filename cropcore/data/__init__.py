"""Datasets: WorldCereal and dl4sits point time series, PASTIS-format and composed (semi-synthetic) patches,
and a sharded streaming dataset for data larger than memory."""
