"""Recorded public-catalog items, and the real demo scenes described in each public catalog's conventions.

:func:`recorded_items` reads the real item JSON under ``tests/data/catalogs`` (sources in ``SOURCES.md``).
:func:`demo_items` writes the WorldCereal demo patch (the embedded catalog's 12 monthly composites, from
``CROPCORE_DATA_DIR/worldcereal/patch_inputs_monthly.nc``) as local COGs the way each catalog stores its
scenes, and returns one item dict per month made from the catalog's real recorded item: same asset keys,
titles, ``eo:bands`` / ``bands``, ``raster:bands`` / ``raster:scale`` / ``raster:offset``, properties and
links, with the hrefs rewritten to the local files (``file://``) and geometry, bbox, datetime, cloud cover,
tile and ``proj:*`` set to the demo patch. Assets without demo data (B01, B8A, B09, AOT, WVP, TCI, the
JP2 copies, metadata files) are left out.

How each catalog stores its pixels (see ``SOURCES.md``):

* Earth Search ``sentinel-2-l2a`` (baseline 05.09, ``earthsearch:boa_offset_applied: true``): the +1000
  BOA offset already removed, so DN = reflectance x 10000, whatever ``raster:bands`` says;
* Planetary Computer (written as baseline 04.00, the first with the offset) and Copernicus Data Space
  (``processing:version`` 05.11, ``raster:offset`` -0.1): DN = reflectance x 10000 + 1000.

Everywhere no data is 0 (the patch's 65535, and its few 0 DNs, which are no data in Sentinel-2 L2A
and which cropcore reads as no data in the embedded catalog too). The 10 m bands (B02, B03, B04, B08) are
written at 10 m, the 20 m bands (B05, B06, B07, B11, B12) at 20 m, each pixel the mean of its 2 x 2 block
(the patch holds them at 10 m: mostly equal blocks, but 2-4 % of the blocks of a monthly composite differ)
and an SCL at 20 m: 4 (vegetation) where the block has data, 9 (cloud, high
probability) where it has none.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS
from rasterio.transform import Affine, array_bounds
from shapely.geometry import shape

from cropcore.settings import data_dir
from cropcore.stac.build import WORLDCEREAL_BANDS, Raster, footprint, invalid_percent, write_cog

CATALOGS_DIR = Path(__file__).parent / "data" / "catalogs"
BANDS_10M = ("B02", "B03", "B04", "B08")
BANDS_20M = ("B05", "B06", "B07", "B11", "B12")
TILE = "31UFS"
MISSING = 65535  # the WorldCereal patch's no-data value


@dataclass(frozen=True)
class Layout:
    """How one public catalog describes and stores a Sentinel-2 L2A scene."""

    catalog: str
    collection: str
    recorded: str  # file under tests/data/catalogs/<catalog>/
    keys: dict[str, str]  # canonical band (B02 ... B12, SCL) -> the catalog's asset key
    dn_offset: int  # added to the digital numbers of the reflectance bands
    baseline: str  # processing baseline written in the items

    def item_id(self, when: datetime) -> str:
        day = f"{when:%Y%m%d}"
        if self.catalog == "earth-search":
            return f"S2B_{TILE}_{day}_0_L2A"
        if self.catalog == "planetary-computer":
            return f"S2B_MSIL2A_{day}T104619_R051_T{TILE}_{day}T131200"
        return f"S2B_MSIL2A_{day}T104619_N{self.baseline.replace('.', '')}_R051_T{TILE}_{day}T131200"


LAYOUTS = {
    "earth-search": Layout(
        "earth-search", "sentinel-2-l2a", "S2A_39QTA_20230628_0_L2A.json",
        {"B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2", "B07": "rededge3",
         "B08": "nir", "B11": "swir16", "B12": "swir22", "SCL": "scl"},
        dn_offset=0, baseline="05.09"),
    "planetary-computer": Layout(
        "planetary-computer", "sentinel-2-l2a", "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json",
        {b: b for b in (*WORLDCEREAL_BANDS, "SCL")}, dn_offset=1000, baseline="04.00"),
    "copernicus": Layout(
        "copernicus", "sentinel-2-l2a",
        "S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914_cdse_stac_v110.json",
        {**{b: f"{b}_10m" for b in BANDS_10M}, **{b: f"{b}_20m" for b in BANDS_20M}, "SCL": "SCL_20m"},
        dn_offset=1000, baseline="05.11"),
}


def recorded(path: str) -> dict[str, Any]:
    """A recorded JSON file, ``<catalog>/<name>.json`` under ``tests/data/catalogs``."""
    return json.loads((CATALOGS_DIR / path).read_text())


def recorded_items(catalog: str) -> list[dict[str, Any]]:
    """Every real item recorded for ``catalog`` (single items and the features of recorded pages)."""
    items = []
    for path in sorted((CATALOGS_DIR / catalog).glob("*.json")):
        doc = json.loads(path.read_text())
        items += doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
    return items


@dataclass(frozen=True)
class DemoMonth:
    """One monthly composite of the demo patch: digital numbers as the embedded catalog holds them."""

    start: datetime
    bands: dict[str, np.ndarray]  # (100, 100) uint16, 65535 = no data
    transform: Affine
    crs: CRS

    @property
    def cloud_cover(self) -> float:
        """As the embedded catalog computes it: percent of pixels without a value in some band."""
        return invalid_percent(list(self.bands.values()), (0, MISSING))


def demo_months() -> list[DemoMonth]:
    """The 12 monthly composites of the WorldCereal demo patch (Nov 2020 - Oct 2021)."""
    import xarray as xr

    with xr.open_dataset(data_dir("worldcereal") / "worldcereal" / "patch_inputs_monthly.nc") as ds:
        crs = CRS.from_wkt(ds["crs"].attrs["crs_wkt"])
        x, y = ds["x"].values, ds["y"].values
        res = float(x[1] - x[0])
        transform = Affine(res, 0, float(x[0]) - res / 2, 0, -res, float(y[0]) + res / 2)
        return [DemoMonth(datetime.fromisoformat(str(t)[:10]).replace(tzinfo=UTC),
                          {b: ds[f"S2-L2A-{b}"].isel(t=i).values.astype("uint16") for b in WORLDCEREAL_BANDS},
                          transform, crs)
                for i, t in enumerate(ds["t"].values)]


def block_mean(dn: np.ndarray) -> np.ndarray:
    """10 m digital numbers to 20 m: the rounded mean of the valid pixels of each 2 x 2 block (else 65535)."""
    blocks = dn.reshape(dn.shape[0] // 2, 2, dn.shape[1] // 2, 2).astype("float64")
    valid = (blocks != MISSING) & (blocks != 0)
    count = valid.sum(axis=(1, 3))
    total = np.where(valid, blocks, 0).sum(axis=(1, 3))
    mean = np.floor(total / np.maximum(count, 1) + 0.5)
    return np.where(count > 0, mean, MISSING).astype("uint16")


def _rasters(month: DemoMonth, layout: Layout) -> dict[str, Raster]:
    """The month's bands as this catalog stores them (DN offset, native resolution, no data 0) + SCL."""
    t10 = month.transform
    t20 = t10 * Affine.scale(2, 2)
    out = {}
    for band, dn in month.bands.items():
        native = dn if band in BANDS_10M else block_mean(dn)
        valid = (native != MISSING) & (native != 0)  # 0: no data in Sentinel-2 L2A, whatever the patch's nodata says
        stored = np.where(valid, native.astype("uint32") + layout.dn_offset, 0).astype("uint16")
        out[band] = Raster(layout.keys[band], stored, t10 if band in BANDS_10M else t20, month.crs, 0)
    has_data = np.zeros(month.bands["B04"].shape, dtype=bool)
    for dn in month.bands.values():
        has_data |= (dn != MISSING) & (dn != 0)
    block = has_data.reshape(has_data.shape[0] // 2, 2, has_data.shape[1] // 2, 2).any(axis=(1, 3))
    out["SCL"] = Raster(layout.keys["SCL"], np.where(block, 4, 9).astype("uint8"), t20, month.crs, 0)
    return out


def _proj(raster: Raster) -> dict[str, Any]:
    height, width = raster.array.shape
    west, south, east, north = array_bounds(height, width, raster.transform)
    return {"proj:shape": [height, width], "proj:transform": list(raster.transform)[:6],
            "proj:bbox": [west, south, east, north]}


def demo_item(month: DemoMonth, layout: Layout, out: Path) -> dict[str, Any]:
    """One month of the demo patch as ``layout``'s catalog would describe it; writes its COGs under ``out``."""
    item = copy.deepcopy(recorded(f"{layout.catalog}/{layout.recorded}"))
    when = month.start.replace(day=15, hour=10, minute=56, second=21)
    item_id = layout.item_id(when)
    rasters = _rasters(month, layout)
    geometry = footprint(month.transform, month.bands["B04"].shape, month.crs)
    epsg = month.crs.to_epsg()
    item.update(id=item_id, geometry=geometry, bbox=list(shape(geometry).bounds), collection=layout.collection)
    props = item["properties"]
    stamp = when.isoformat().replace("+00:00", "Z")
    props.update({"datetime": stamp, "eo:cloud_cover": month.cloud_cover})
    if "start_datetime" in props:
        props.update(start_datetime=stamp, end_datetime=stamp)
    if layout.catalog == "earth-search":
        props.update({"proj:epsg": epsg, "grid:code": f"MGRS-{TILE}", "mgrs:utm_zone": int(TILE[:2]),
                      "mgrs:latitude_band": TILE[2], "mgrs:grid_square": TILE[3:], "s2:processing_baseline":
                      layout.baseline, "earthsearch:boa_offset_applied": True})
    elif layout.catalog == "planetary-computer":
        props.update({"proj:epsg": epsg, "s2:mgrs_tile": TILE, "s2:processing_baseline": layout.baseline})
    else:
        props.update({"grid:code": f"MGRS-{TILE}", "processing:version": layout.baseline})
    wanted = {raster.band: band for band, raster in rasters.items()}
    item["assets"] = {key: asset for key, asset in item["assets"].items() if key in wanted}
    folder = out / layout.catalog / item_id
    for key, asset in item["assets"].items():
        raster = rasters[wanted[key]]
        path = folder / f"{key}.tif"
        write_cog(raster, path)
        asset["href"] = path.resolve().as_uri()
        asset["type"] = "image/tiff; application=geotiff; profile=cloud-optimized"
        asset.pop("alternate", None)  # the recorded HTTPS copy of the JP2 does not exist here
        for field in ("file:size", "file:checksum", "file:local_path"):
            asset.pop(field, None)
        proj = _proj(raster)
        if layout.catalog == "copernicus":
            asset.update(proj, **{"proj:code": f"EPSG:{epsg}"})
        elif layout.catalog == "planetary-computer":
            asset.update(proj)
        else:
            asset.update({k: proj[k] for k in ("proj:shape", "proj:transform")})
    return item


def demo_items(catalog: str, out: Path) -> list[dict[str, Any]]:
    """The 12 demo months as ``catalog`` (a key of :data:`LAYOUTS`) would serve them; COGs under ``out``."""
    layout = LAYOUTS[catalog]
    return [demo_item(month, layout, out) for month in demo_months()]
