"""What a run delivers: the product files (:mod:`.product`), COG writing (:mod:`.export`), statistics
(:mod:`.stats`) and plotly figures (:mod:`.plots`)."""

from cropcore.products.export import write_cog
from cropcore.products.product import FILES, map_colors, product_bytes, product_files, write_product
from cropcore.products.stats import class_areas, phenology

__all__ = ["FILES", "class_areas", "map_colors", "phenology", "product_bytes", "product_files", "write_cog",
           "write_product"]
