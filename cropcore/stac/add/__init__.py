"""``catalog add``: the user's own Sentinel-2 products indexed into the embedded catalog.

SAFE folders (Level-2A or Level-1C, read from their metadata: :mod:`~cropcore.stac.add.safe`) and folders
of per-band GeoTIFF / COG / JPEG 2000 files (read from their names: :mod:`~cropcore.stac.add.folder`)
become items of the ``user-s2`` collection (:mod:`~cropcore.stac.add.item`), kept under
``CROPCORE_HOME/user-scenes`` and loaded into the running catalog at once (:mod:`~cropcore.stac.add.store`).

Field library: rio-stac (pinned in requirements.txt) reads the raster-derived fields of each COG. The
stactools Sentinel-2 package (stactools-sentinel2 0.8.0, which installs cleanly beside the pins) was
checked and not used: its ``create_item`` needs the SAFE's ``manifest.safe`` and the files it lists
(per-band folders have none), keys assets by common name with
resolution suffixes (``red``, ``red_20m``) instead of the embedded catalog's ``B04``, points at the JP2
files, writes scale 0.0001 whatever the product's ``QUANTIFICATION_VALUE`` and derives the L1C offset
from the baseline instead of reading ``RADIO_ADD_OFFSET``; it would also add four packages (stactools,
stactools-sentinel2, antimeridian, lxml). The few product fields needed are read here with the standard
library's ElementTree.
"""

from cropcore.stac.add.folder import Stated
from cropcore.stac.add.store import USER_COLLECTION, Added, add_products, list_items, remove_items

__all__ = ["USER_COLLECTION", "Added", "Stated", "add_products", "list_items", "remove_items"]
