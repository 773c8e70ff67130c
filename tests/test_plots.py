"""Plotly figure builders: area per class, phenology per class, one pixel's NDVI curve, reliability."""

import pandas as pd
import pytest

from cropcore.products import plots

COLORS = {0: "#9bd35a", 1: "#f2c12e", 2: "#c8a165"}
TIMES = pd.date_range("2020-11-01", periods=3, freq="MS")


def test_area_bar_colours_and_labels():
    areas = pd.DataFrame({"class_id": [0, 1, 2], "class": ["grass", "maize", "wheat"], "pixels": [50, 30, 0],
                          "hectares": [0.5, 0.3, 0.0], "percent": [62.5, 37.5, 0.0]})
    fig = plots.area_bar(areas, COLORS)
    (bar,) = fig.data
    assert list(bar.y) == ["wheat", "maize", "grass"]  # sorted by area, largest on top
    assert list(bar.marker.color) == [COLORS[2], COLORS[1], COLORS[0]]
    assert bar.text[2] == "0.5 ha · 62.5 %"
    assert fig.layout.title.text == "Area per class"


def test_area_bar_shows_uncertain_and_leaves_the_cropland_total_out():
    areas = pd.DataFrame({"class_id": [0, 1, 254, None], "class": ["grass", "maize", "uncertain", "cropland"],
                          "pixels": [50, 30, 20, 30], "hectares": [0.5, 0.3, 0.2, 0.3], "percent": [50, 30, 20, 30],
                          "kind": ["non-crop", "crop", "uncertain", "total"]})
    (bar,) = plots.area_bar(areas, {**COLORS, 254: "#4a4a4a"}).data
    assert list(bar.y) == ["uncertain", "maize", "grass"] and bar.marker.color[0] == "#4a4a4a"


def test_reliability_diagram_beside_the_diagonal():
    fig = plots.reliability_figure([0.3, 0.6, 0.9], [0.25, 0.62, 0.88], [10, 0, 90], ece_raw=0.12, ece=0.03)
    diagonal, curve = fig.data
    assert list(diagonal.x) == [0, 1] and list(curve.y) == [0.25, 0.62, 0.88]
    assert curve.marker.size[2] > curve.marker.size[0] > curve.marker.size[1]  # sized by count
    assert fig.layout.title.text == "Reliability on held-out data (ECE before 0.120, after 0.030)"


def pheno_rows(class_id: int, name: str, median: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"class_id": class_id, "class": name, "time": TIMES, "median": median,
                         "q25": [m - 0.1 for m in median], "q75": [m + 0.1 for m in median], "pixels": 7})


def test_phenology_figure_has_a_band_and_a_median_per_class():
    pheno = pd.concat([pheno_rows(0, "grass", [0.5, 0.6, 0.7]), pheno_rows(1, "maize", [0.2, 0.3, 0.8])])
    fig = plots.phenology_figure(pheno, COLORS)
    assert len(fig.data) == 4
    band, median = fig.data[2], fig.data[3]
    assert band.fill == "toself" and band.fillcolor == "rgba(242, 193, 46, 0.18)"
    assert list(band.y) == pytest.approx([0.3, 0.4, 0.9, 0.7, 0.2, 0.1])  # q75 forward, q25 back
    assert median.name == "maize (7 px)" and median.line.color == COLORS[1]
    assert list(median.y) == [0.2, 0.3, 0.8]
    assert tuple(fig.layout.yaxis.range) == plots.NDVI_RANGE


def test_pixel_curve_with_and_without_its_class_median():
    fig = plots.pixel_ndvi_figure(TIMES, [0.1, 0.5, 0.9], label="maize", color=COLORS[1])
    assert len(fig.data) == 1 and fig.data[0].line.color == COLORS[1]
    reference = pheno_rows(1, "maize", [0.2, 0.3, 0.8])
    fig = plots.pixel_ndvi_figure(TIMES, [0.1, 0.5, 0.9], label="maize", reference=reference)
    assert [t.name for t in fig.data] == ["class median", "maize"]
    assert "maize" in fig.layout.title.text
