"""The Streamlit dashboard's building blocks: the only package of cropcore that imports streamlit.

``map`` (offline Leaflet map), ``assets`` (local copies of the map's JS/CSS), ``state`` (session keys),
``sidebar`` (shared sidebar), ``search`` (Search page widgets), ``seasons`` (date presets).
"""
