"""The Streamlit dashboard's building blocks: the only package of cropcore that imports streamlit.

Pages (``pages/``) import these modules and call them; nothing here is imported by the rest of cropcore.
"""

__all__ = [
    "analysis",  # Analysis page: area bars, phenology, clicked pixel
    "assets",  # local copies of the map's JS/CSS (offline)
    "cropmap",  # Crop map page: overlays, legend
    "downloads",  # Export page: the product as download buttons
    "map",  # offline Leaflet map
    "modelcard",  # Model page
    "overlay",  # rasters -> RGBA images on Web Mercator
    "runs",  # runs: parameters from the session, cached results
    "search",  # Search page widgets
    "seasons",  # date presets
    "sidebar",  # the shared sidebar
    "state",  # session-state keys, defined once
]
