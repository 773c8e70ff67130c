"""Plotly figures: area per class, NDVI phenology per class, the NDVI curve of one pixel, a reliability diagram."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_LAYOUT = {"template": "plotly_white", "margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "height": 380}
NDVI_RANGE = (-0.2, 1.0)


def _rgba(colour: str, alpha: float) -> str:
    c = colour.lstrip("#")
    return f"rgba({int(c[0:2], 16)}, {int(c[2:4], 16)}, {int(c[4:6], 16)}, {alpha})"


def area_bar(areas: pd.DataFrame, colors: Mapping[int, str]) -> go.Figure:
    """Horizontal bars of hectares per class (from :func:`cropcore.products.stats.class_areas`), labelled with %;
    "uncertain" is a bar of its own, totals (the cropland row) are left out."""
    rows = areas[areas["kind"] != "total"] if "kind" in areas else areas
    rows = rows.sort_values("hectares")
    fig = go.Figure(go.Bar(
        x=rows["hectares"], y=rows["class"], orientation="h",
        marker_color=[colors.get(int(i), "#888888") for i in rows["class_id"]],
        text=[f"{ha:,.1f} ha · {pct:.1f} %" for ha, pct in zip(rows["hectares"], rows["percent"], strict=True)],
        textposition="auto", customdata=rows[["pixels", "percent"]],
        hovertemplate="%{y}: %{x:,.2f} ha (%{customdata[1]:.1f} %, %{customdata[0]:,} pixels)<extra></extra>",
    ))
    fig.update_layout(title="Area per class", xaxis_title="hectares", yaxis_title=None, showlegend=False,
                      **_LAYOUT)
    return fig


def phenology_figure(pheno: pd.DataFrame, colors: Mapping[int, str]) -> go.Figure:
    """NDVI median per class over time with its inter-quartile band (from :func:`cropcore.products.stats.phenology`)."""
    fig = go.Figure()
    for class_id, rows in pheno.groupby("class_id", sort=True):
        colour = colors.get(int(class_id), "#888888")
        name = f"{rows['class'].iloc[0]} ({int(rows['pixels'].iloc[0]):,} px)"
        fig.add_trace(go.Scatter(
            x=list(rows["time"]) + list(rows["time"])[::-1], y=list(rows["q75"]) + list(rows["q25"])[::-1],
            fill="toself", fillcolor=_rgba(colour, 0.18), line={"width": 0}, hoverinfo="skip",
            legendgroup=str(class_id), showlegend=False, name=f"{name} IQR",
        ))
        fig.add_trace(go.Scatter(
            x=rows["time"], y=rows["median"], mode="lines+markers", name=name, legendgroup=str(class_id),
            line={"color": colour, "width": 2.5},
            hovertemplate="%{x|%b %Y}: NDVI %{y:.2f}<extra>" + str(rows["class"].iloc[0]) + "</extra>",
        ))
    fig.update_layout(title="NDVI phenology per class (median and inter-quartile range)",
                      xaxis_title=None, yaxis_title="NDVI", yaxis_range=NDVI_RANGE,
                      legend={"orientation": "h", "y": -0.15}, **_LAYOUT)
    return fig


def pixel_ndvi_figure(times: Sequence, ndvi: Sequence[float], *, label: str, color: str = "#1565c0",
                      reference: pd.DataFrame | None = None, month: Any | None = None) -> go.Figure:
    """The NDVI curve of one pixel; ``reference`` (phenology rows of its class) adds the class median, ``month``
    (one of ``times``) a vertical line: the month shown on the map."""
    fig = go.Figure()
    if reference is not None and len(reference):
        fig.add_trace(go.Scatter(x=reference["time"], y=reference["median"], mode="lines",
                                 name="class median", line={"color": "#9e9e9e", "dash": "dash"}))
    fig.add_trace(go.Scatter(x=list(times), y=np.asarray(ndvi, dtype=float), mode="lines+markers", name=label,
                             line={"color": color, "width": 3}))
    if month is not None:
        fig.add_shape(type="line", x0=month, x1=month, y0=0, y1=1, yref="paper",
                      line={"color": "#333333", "width": 2, "dash": "dot"})
        fig.add_annotation(x=month, y=1, yref="paper", text=f"{pd.Timestamp(month):%b %Y} on the map",
                           showarrow=False, yanchor="bottom", font={"size": 13})
    fig.update_layout(title=f"NDVI of the clicked pixel: {label}", yaxis_title="NDVI", yaxis_range=NDVI_RANGE,
                      legend={"orientation": "h", "y": -0.15}, **_LAYOUT)
    return fig


def reliability_figure(confidence: Sequence[float], accuracy: Sequence[float], count: Sequence[int], *,
                       ece_raw: float | None = None, ece: float | None = None) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin of the calibrated model against the perfect diagonal.

    Marker size follows each bin's sample count; the expected calibration error before and after temperature
    scaling (``ece_raw``, ``ece``) goes into the title when given.
    """
    counts = np.asarray(count, dtype=float)
    size = 8 + 22 * np.sqrt(counts / counts.max()) if counts.size and counts.max() > 0 else 10
    fig = go.Figure([
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                   line={"color": "#9e9e9e", "dash": "dash"}, hoverinfo="skip"),
        go.Scatter(x=list(confidence), y=list(accuracy), mode="lines+markers", name="calibrated model",
                   line={"color": "#1565c0", "width": 2.5}, marker={"size": size}, customdata=counts,
                   hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata:,.0f} samples)<extra></extra>"),
    ])
    errors = [f"{label} {value:.3f}" for label, value in (("ECE before", ece_raw), ("after", ece)) if value is not None]
    title = "Reliability on held-out data" + (f" ({', '.join(errors)})" if errors else "")
    fig.update_layout(title=title, xaxis_title="confidence (calibrated)", yaxis_title="accuracy",
                      xaxis_range=[0, 1], yaxis_range=[0, 1], legend={"orientation": "h", "y": -0.2}, **_LAYOUT)
    return fig
