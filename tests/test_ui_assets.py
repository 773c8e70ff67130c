"""Local copies of the map's JS/CSS and season presets (no streamlit needed)."""

from __future__ import annotations

from datetime import date, timedelta

import folium
import folium.plugins
import pytest

from cropcore.errors import ConfigError
from cropcore.ui.assets import asset_name, localize, write_asset
from cropcore.ui.seasons import SEASONS, season_range

LEAFLET = folium.Map.default_js[0][1]


def test_asset_names_are_stable_and_distinct():
    assert asset_name(LEAFLET) == asset_name(LEAFLET)
    assert asset_name(LEAFLET).endswith("-leaflet.js")
    names = {asset_name(url) for _, url in folium.Map.default_js + folium.Map.default_css}
    assert len(names) == len(folium.Map.default_js) + len(folium.Map.default_css)


def test_localize_writes_files_and_leaves_class_defaults_alone(tmp_path):
    m = folium.Map(tiles=None)
    folium.plugins.Draw().add_to(m)
    links = localize(m, tmp_path, "/app/static/")
    assert links and all(link.startswith("/app/static/vendor/") for link in links)
    for link in links:
        assert (tmp_path / link.removeprefix("/app/static/")).stat().st_size > 1000
    html = m.get_root().render()
    assert "cdn.jsdelivr" not in html and "cdnjs.cloudflare" not in html
    assert folium.Map.default_js[0][1] == LEAFLET  # other maps still get the defaults
    assert localize(m, tmp_path, "/app/static/") == links  # idempotent


def test_unknown_resource_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no offline copy"):
        write_asset("https://example.invalid/lib.js", tmp_path)


@pytest.mark.parametrize("season", list(SEASONS))
def test_seasons_end_in_the_chosen_year(season):
    start, end = season_range(season, 2021)
    assert end.year == 2021 and start < end
    assert start.day == 1 and (end + timedelta(days=1)).day == 1


def test_agricultural_year_is_the_demo_season():
    assert season_range("Agricultural year (Nov-Oct)", 2021) == (date(2020, 11, 1), date(2021, 10, 31))


def test_unknown_season_lists_the_choices():
    with pytest.raises(KeyError, match="Calendar year"):
        season_range("monsoon", 2021)
