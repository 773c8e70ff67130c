"""A product's bands as COGs and its STAC item, in the embedded catalog's layout.

Asset keys ``B01`` ... ``B12``, ``B8A``, ``SCL``; each asset a deflate COG with eo:bands, proj and
raster:bands, whose ``scale`` / ``offset`` come from the product (reflectance = DN * scale + offset). The
raster-derived fields (footprint, projection, data type, no data, statistics) are read from each COG by
rio-stac's helpers and written through pystac's extension classes (rio-stac's own ``create_stac_item``
writes older extension versions, e.g. ``proj:epsg`` without ``proj:code``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import rasterio
from pyproj import CRS
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.grid import GridExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension, Statistics
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from rio_stac.stac import get_dataset_geom, get_projection_info, get_raster_info
from shapely.geometry import shape

from cropcore.errors import ConfigError, ServiceError
from cropcore.legend import S2_BANDS, SCL_CLASSES
from cropcore.stac.add.folder import READ_ERRORS
from cropcore.stac.add.product import BAND_NAMES, PRODUCT_TYPES, Product
from cropcore.stac.build import Raster, write_quicklook

S2_EXTENSION = "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json"
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"


def to_cog(src: Path, dst: Path, *, nodata: int, categorical: bool) -> None:
    """Convert one band file to a validated deflate COG (the source's pixels, unchanged)."""
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=256, blockysize=256)  # as the embedded catalog's: overviews from 512 px on
    try:
        # GDAL's JP2 driver reports a GCP CRS without GCPs, which rio-cogeo takes for a GCP-georeferenced file
        # ("Cannot invert geotransform"): an identity VRT on the file's own grid hides it, pixels unchanged
        with rasterio.open(src) as ds, WarpedVRT(ds, src_crs=ds.crs, src_transform=ds.transform) as vrt:
            cog_translate(vrt, str(dst), profile, nodata=nodata, quiet=True,
                          overview_resampling="nearest" if categorical else "average")
    except READ_ERRORS as exc:
        raise ConfigError(f"cannot read {src}: {' '.join(str(exc).split())[:200]}") from None
    valid, errors, _ = cog_validate(str(dst), quiet=True)
    if not valid:
        raise ServiceError(f"{dst} is not a valid COG: {errors}")


def _band_asset(product: Product, band: str, cog: Path, href: str) -> tuple[pystac.Asset, dict]:
    """The asset of one COG, and its projection info (rio-stac)."""
    with rasterio.open(cog) as src:
        proj = get_projection_info(src)
        info = get_raster_info(src, max_size=1024)[0]
    asset = pystac.Asset(href=href, media_type=pystac.MediaType.COG, title=band,
                         roles=["data"] if band == "SCL" else ["data", "reflectance"])
    ProjectionExtension.ext(asset).apply(code=f"EPSG:{proj['epsg']}", shape=proj["shape"],
                                         transform=proj["transform"][:6], bbox=proj["bbox"])
    stats = info["statistics"]
    raster = RasterBand.create(
        nodata=product.nodata[band], data_type=DataType(info["data_type"]),
        spatial_resolution=abs(proj["transform"][0]),
        statistics=Statistics.create(**stats) if stats["valid_percent"] > 0 else None,
    )
    if band == "SCL":
        ClassificationExtension.ext(raster).classes = [
            Classification.create(value=k, name=v.replace(" ", "_"), description=v, nodata=k == 0 or None)
            for k, v in SCL_CLASSES.items()]
    else:
        raster.scale, raster.offset = product.scale_offset(band)
        meta = S2_BANDS[band]
        EOExtension.ext(asset).bands = [Band.create(name=band, common_name=meta.common_name,
                                                    center_wavelength=meta.center_wavelength,
                                                    full_width_half_max=meta.full_width_half_max)]
    RasterExtension.ext(asset).bands = [raster]
    return asset, proj


def _quicklook(product: Product, cogs: dict[str, Path], dst: Path) -> bool:
    """A true-colour PNG from the COGs' overviews, offsets removed (as the embedded catalog's quicklooks)."""
    if not all(b in cogs for b in ("B04", "B03", "B02")):
        return False
    rasters = []
    for band in ("B04", "B03", "B02"):
        with rasterio.open(cogs[band]) as src:
            factor = max(1, max(src.width, src.height) // 256)
            dn = src.read(1, out_shape=(max(1, src.height // factor), max(1, src.width // factor)),
                          resampling=Resampling.nearest).astype("int32")
            grid = src.transform, CRS.from_user_input(src.crs.to_wkt())
        shifted = np.clip(dn + int(product.add_offsets.get(band, 0)), 1, 65534)
        rasters.append(Raster(band, np.where(dn == product.nodata[band], 0, shifted).astype("uint16"), *grid, 0))
    return write_quicklook(rasters, dst)


def build_item(product: Product, staging: Path, final: Path) -> pystac.Item:
    """Write the bands as COGs into ``staging`` and return the item, its hrefs pointing into ``final``."""
    cogs: dict[str, Path] = {}
    assets: dict[str, pystac.Asset] = {}
    projs: dict[str, dict] = {}
    for band in sorted(product.bands, key=BAND_NAMES.index):
        cogs[band] = staging / f"{band}.tif"
        to_cog(product.bands[band], cogs[band], nodata=product.nodata[band], categorical=band == "SCL")
        assets[band], projs[band] = _band_asset(product, band, cogs[band], (final / cogs[band].name).as_uri())
    finest = min(projs, key=lambda b: abs(projs[b]["transform"][0]))
    proj = projs[finest]
    with rasterio.open(cogs[finest]) as src:
        geom = get_dataset_geom(src, densify_pts=21, precision=7)
    properties = {
        "constellation": "sentinel-2", "platform": product.platform, "instruments": ["msi"],
        "s2:mgrs_tile": product.tile, "s2:processing_baseline": product.baseline,
        "s2:product_type": PRODUCT_TYPES[product.level], "processing:level": product.level,
        "cropcore:source": str(product.source), **product.properties,
    }
    if product.cloud_cover is not None:
        properties["eo:cloud_cover"] = product.cloud_cover
    # whole seconds: pypgstac 0.10 compares datetimes as text to widen a partition's range, and "...01.024000Z"
    # sorts before "...01Z", so a load mixing both formats fails its range check and retries for minutes
    item = pystac.Item(id=product.item_id, geometry=geom["footprint"], bbox=list(shape(geom["footprint"]).bounds),
                       datetime=product.when.replace(microsecond=0), properties=properties)
    item.stac_extensions += [S2_EXTENSION, PROCESSING_EXTENSION]
    GridExtension.ext(item, add_if_missing=True).code = f"MGRS-{product.tile}"
    for ext in (EOExtension, RasterExtension, ClassificationExtension):
        ext.add_to(item)
    if _quicklook(product, cogs, staging / "quicklook.png"):
        item.add_asset("thumbnail", pystac.Asset(href=(final / "quicklook.png").as_uri(),
                                                 media_type=pystac.MediaType.PNG, title="true-colour quicklook",
                                                 roles=["thumbnail"]))
    ProjectionExtension.ext(item, add_if_missing=True).apply(code=f"EPSG:{proj['epsg']}", shape=proj["shape"],
                                                             transform=proj["transform"][:6])
    item.properties["proj:epsg"] = proj["epsg"]  # for clients that predate proj v2, as build.py does
    for band, asset in assets.items():
        item.add_asset(band, asset)
    return item
