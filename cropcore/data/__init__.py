"""Datasets: WorldCereal and dl4sits point time series, PASTIS-format and composed patches."""
