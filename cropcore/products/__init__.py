"""What a run delivers: the product files (:mod:`.product`), COG writing (:mod:`.export`), statistics
(:mod:`.stats`) and plotly figures (:mod:`.plots`)."""

from cropcore.products.export import write_cog
from cropcore.products.product import FILES, product_bytes, write_product
from cropcore.products.stats import class_areas, phenology

__all__ = ["FILES", "class_areas", "phenology", "product_bytes", "write_cog", "write_product"]
