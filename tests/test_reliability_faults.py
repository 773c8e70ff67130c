"""Reliability, faults: unreadable data, a misbehaving STAC API, bad checkpoints and failed exports get a
short answer (library error, CLI exit code and one line, dashboard ``st.error``) and leave nothing behind.
The catalog and data faults use a real HTTP server on 127.0.0.1 (tests/faultserver.py). See
docs/RELIABILITY.md."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import torch
from faultserver import FaultServer, fault_server
from rasterio.warp import Resampling, calculate_default_transform, reproject
from test_ui_pages import CROP_MAP, messages, page, run_button

from cropcore import pipeline
from cropcore.cli import main
from cropcore.cube.load import load_cube
from cropcore.errors import CatalogUnavailableError, CheckpointError, ConfigError, ExportError
from cropcore.inference.options import InferenceOptions
from cropcore.models import ModelMeta
from cropcore.models.checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from cropcore.pipeline import RunParams, export_run, run
from cropcore.products.export import write_cog
from cropcore.stac.catalog import search_items
from cropcore.ui import runs

DEMO = (5.3189, 50.6286, 5.3334, 50.6378)
SEASON = ("2020-11-01", "2021-10-31")


@pytest.fixture(scope="module")
def demo_items(stac_api) -> list[pystac.Item]:
    return list(search_items(DEMO, SEASON, max_cloud=80, catalog=stac_api).items)


@pytest.fixture(scope="module")
def demo_result(stac_api) -> pipeline.RunResult:
    return run(RunParams(aoi=DEMO, start=SEASON[0], end=SEASON[1], catalog=stac_api))


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        yield running


def cli(capture: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capture.readouterr().err.strip().splitlines()


def predict_args(catalog: str, out: Path) -> list[str]:
    return ["predict", "--bbox", *map(str, DEMO), "--start", SEASON[0], "--end", SEASON[1], "--catalog", catalog,
            "--out", str(out)]


def custom_catalog(url: str) -> dict[str, str]:
    """Dashboard session state choosing a STAC API by URL in the sidebar."""
    return {"widget.catalog_choice": "custom URL", "widget.catalog_url": url}


# -- data ------------------------------------------------------------------------------------------------------

def test_asset_that_404s_is_listed_and_the_run_completes(demo_items, demo_result, server, tmp_path, capsys,
                                                           monkeypatch):
    """A real COG served over HTTP on 127.0.0.1, one band of one scene answering 404."""
    bad = demo_items[4]
    server.serve_items(demo_items, missing={bad.id: "B08"})
    result = run(RunParams(aoi=DEMO, start=SEASON[0], end=SEASON[1], catalog=server.url))
    assert [(f.item_id, f.asset) for f in result.failures] == [(bad.id, "B08")]
    assert "404" in result.failures[0].reason
    same = (result.prediction["class"].values == demo_result.prediction["class"].values).mean()
    assert same > 0.95  # one band of one month missing changes little
    code, err = cli(capsys, *predict_args(server.url, tmp_path / "map.tif"))
    assert code == 0 and (tmp_path / "map.tif").is_file()
    assert [line for line in err if line.startswith("warning:")] == [
        f"warning: could not read {bad.id}/B08: {result.failures[0].reason}"]
    runs._store().clear()
    at = page(CROP_MAP, monkeypatch, **custom_catalog(server.url))
    at = run_button(at).click().run()
    assert not at.exception and not at.error, messages(at.error)
    assert f"{bad.id} B08" in messages(at.warning)


def test_truncated_cog_over_http_is_listed(demo_items, server, tmp_path):
    bad = demo_items[2]
    source = Path(bad.assets["B04"].href.removeprefix("file://"))
    cut = tmp_path / "B04.tif"
    cut.write_bytes(source.read_bytes()[:200])
    item = bad.clone()
    item.assets["B04"].href = cut.as_uri()
    items = [item if i.id == bad.id else i for i in demo_items]
    result = load_cube(server.serve_items(items), ["B04", "B08"], aoi=DEMO)
    assert [(f.item_id, f.asset) for f in result.failures] == [(bad.id, "B04")]
    values = result.cube.values
    assert (values[2, 0] == 65535).all() and (values[3] != 65535).any()


def test_scene_missing_a_required_band(demo_items, server, tmp_path, capsys):
    bad = demo_items[5].clone()
    del bad.assets["B08"]
    items = [bad if i.id == bad.id else i for i in demo_items]
    result = load_cube(items, ["B04", "B08"], aoi=DEMO)
    assert [(f.item_id, f.asset, f.reason) for f in result.failures] == [(bad.id, "B08", "the item has no B08 asset")]
    server.serve_items(items)
    code, err = cli(capsys, *predict_args(server.url, tmp_path / "map.tif"))
    assert code == 0 and f"warning: could not read {bad.id}/B08: the item has no B08 asset" in err
    with pytest.raises(ConfigError, match="unknown bands"):  # a band no scene has: a bad request
        load_cube(items, ["B04", "B99"], aoi=DEMO)


def _reprojected(src_path: Path, dst_path: Path, crs: str) -> None:
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(src.crs, crs, src.width, src.height, *src.bounds,
                                                               resolution=10)
        profile = dict(src.profile, crs=crs, transform=transform, width=width, height=height, driver="COG")
        for key in ("blockxsize", "blockysize", "tiled", "interleave"):
            profile.pop(key, None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest)


def test_mixed_crs_items_load_on_one_grid(demo_items, tmp_path):
    """One scene in the UTM zone next door (EPSG:32632) and one in ETRS89-LAEA: one grid, same pixels."""
    picked = demo_items[3:6]
    items = [picked[0]]
    for item, crs in zip(picked[1:], ("EPSG:32632", "EPSG:3035"), strict=True):
        copy = item.clone()
        for key in ("B04", "B08"):
            out = tmp_path / f"{item.id}-{key}.tif"
            _reprojected(Path(item.assets[key].href.removeprefix("file://")), out, crs)
            copy.assets[key].href = out.as_uri()
            for field in ("proj:code", "proj:epsg", "proj:transform", "proj:shape", "proj:bbox"):
                copy.assets[key].extra_fields.pop(field, None)
                copy.properties.pop(field, None)
        items.append(copy)
    mixed = load_cube(items, ["B04", "B08"], aoi=DEMO, crs="EPSG:32631")
    same = load_cube(picked, ["B04", "B08"], aoi=DEMO, crs="EPSG:32631")
    assert mixed.failures == [] and mixed.cube.shape == same.cube.shape
    a, b = mixed.cube.values.astype(float), same.cube.values.astype(float)
    inside = (a != 65535) & (b != 65535)
    assert inside[1:].mean() > 0.8  # the reprojected rasters lose a little at the patch edges
    assert np.corrcoef(a[inside], b[inside])[0, 1] > 0.9  # two nearest-neighbour resamplings, same scene


# -- catalog ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "words"), [
    ("500", "answered HTTP 500"),
    ("malformed", "not valid JSON"),
    ("slow", "no answer within the timeout"),
])
def test_misbehaving_stac_api(mode, words, server, capsys, monkeypatch):
    server.set_mode(mode, delay=3.0)
    t0 = time.perf_counter()
    with pytest.raises(CatalogUnavailableError, match=words):
        search_items(DEMO, SEASON, catalog=server.url, timeout=0.5, retries=1)
    assert time.perf_counter() - t0 < 5  # bounded: timeout x (retries + 1) plus backoff
    code, err = cli(capsys, "search", "--bbox", *map(str, DEMO), "--start", SEASON[0], "--end", SEASON[1],
                    "--catalog", server.url, "--timeout", "0.5")
    assert code == 4 and len(err) == 1 and words in err[0]
    server.set_mode(mode, delay=0.3)  # the sidebar's health check waits 1.5 s; the search 10 s
    from test_ui_search import DRAWN, FakeMap, button, search_page

    monkeypatch.setattr("cropcore.ui.search.search_items",
                        lambda *a, **kw: search_items(*a, **{**kw, "timeout": 0.2}))
    at = search_page(monkeypatch, FakeMap(DRAWN))
    at.selectbox(key="widget.catalog_choice").select("custom URL").run()
    at.text_input(key="widget.catalog_url").input(server.url).run()
    if mode == "500":  # the sidebar's health check already tells
        assert not at.exception and "Catalog unreachable" in messages(at.warning)
        assert button(at, "Search scenes").disabled
    else:  # the landing page answers (late, or as broken JSON): the search says what failed
        at = button(at, "Search scenes").click().run()
        assert not at.exception and len(at.error) == 1 and words in at.error[0].value


def test_stac_api_down(capsys, tmp_path):
    with fault_server() as gone:
        url = gone.url
    with pytest.raises(CatalogUnavailableError, match="cannot connect"):
        search_items(DEMO, SEASON, catalog=url, retries=0)
    code, err = cli(capsys, *predict_args(url, tmp_path / "map.tif"))
    assert code == 4 and len(err) == 1 and "cannot connect" in err[0]
    assert not any(tmp_path.iterdir())


# -- model -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> tuple[torch.nn.Module, ModelMeta]:
    return load_checkpoint("tempcnn_worldcereal")


def _bad_checkpoints(folder: Path, shipped: tuple[torch.nn.Module, ModelMeta]) -> dict[str, tuple[Path, str]]:
    model, meta = shipped
    good = CHECKPOINT_DIR / "tempcnn_worldcereal.pt"
    data = good.read_bytes()
    out = {}
    wrong_bands = folder / "wrong_bands.pt"  # weights for 9 bands, meta listing 8
    save_checkpoint(wrong_bands, model, replace(meta, bands=meta.bands[:-1]))
    out["wrong band count"] = wrong_bands, "bands but meta lists"
    wrong_legend = folder / "wrong_legend.pt"
    save_checkpoint(wrong_legend, model, replace(meta, legend=meta.legend[:-1]))
    out["wrong legend"] = wrong_legend, "legend has"
    truncated = folder / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    out["truncated bytes"] = truncated, "is corrupted"
    flipped = folder / "flipped.pt"
    middle = len(data) // 2
    flipped.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:])
    out["flipped bytes"] = flipped, "fails its checksum"

    class Payload:
        def __reduce__(self):
            return os.system, ("echo the payload ran",)

    pickled = folder / "pickled.pt"
    torch.save({"format": "cropcore-checkpoint/1", "state_dict": {}, "meta": "{}", "x": Payload()}, pickled)
    out["pickle payload"] = pickled, "weights-only loading refuses"
    return out


def test_bad_checkpoints_are_refused(shipped, tmp_path, stac_api, capfd):
    for name, (path, words) in _bad_checkpoints(tmp_path, shipped).items():
        with pytest.raises(CheckpointError, match=words):
            load_checkpoint(path)
        code, err = cli(capfd, *predict_args(stac_api, tmp_path / "map.tif"), "--model", str(path))
        assert code == 2 and len(err) == 1 and words in err[0], name
        assert "the payload ran" not in capfd.readouterr().out
    assert not list(tmp_path.glob("map*"))


def test_a_damaged_shipped_checkpoint_is_left_out_of_the_dashboard(shipped, monkeypatch, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("tempcnn_worldcereal", "agrunet_worldcereal"):
        (folder / f"{name}.pt").write_bytes((CHECKPOINT_DIR / f"{name}.pt").read_bytes())
    (folder / "agrunet_worldcereal.pt").write_bytes(b"\0" * 100)
    monkeypatch.setattr("cropcore.models.checkpoint.CHECKPOINT_DIR", folder)
    runs.dashboard_models.clear()
    runs.load_model.clear()
    try:
        at = page(CROP_MAP, monkeypatch)
        assert not at.exception
        assert at.selectbox(key="widget.model").options == ["tempcnn_worldcereal (tempcnn)"]
    finally:
        runs.dashboard_models.clear()
        runs.load_model.clear()


def test_cuda_oom_halves_the_batch_and_the_run_completes(stac_api, demo_result, monkeypatch):
    """A CUDA out-of-memory error cannot be caused on a CPU machine: it is injected for every batch of more
    than one tile, in a full pipeline run with batches of 4."""
    from cropcore.inference.devices import Runner

    real, sizes = Runner._forward, []

    def oom_above_one(self, x, latlon=None):
        sizes.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(self, x, latlon)

    monkeypatch.setattr(Runner, "_forward", oom_above_one)
    result = run(RunParams(aoi=DEMO, start=SEASON[0], end=SEASON[1], catalog=stac_api,
                           inference=InferenceOptions(batch_size=4, devices="cpu")))
    assert max(sizes) == 4 and 2 in sizes and sizes.count(1) > 0
    same = (result.prediction["class"].values == demo_result.prediction["class"].values).mean()
    assert same > 0.99  # the same map, tile by tile


# -- export ----------------------------------------------------------------------------------------------------

def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def _fill(path: Path) -> None:
    with open(path, "wb") as fh:
        for _ in range(1000):
            fh.write(b"\0" * 4096)
            fh.flush()


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A 256 kB tmpfs filled to the last byte (as root); elsewhere an injected ENOSPC, see the test."""
    target = tmp_path / "full"
    if not _mount_tmpfs(target, "size=256k"):
        pytest.skip("cannot mount a tmpfs here; test_disk_full_injected covers this row")
    try:
        with pytest.raises(OSError):  # fill it to the last byte
            _fill(target / "filler")
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "filler")


def test_disk_full(demo_result, full_disk, capsys):
    with pytest.raises(ExportError, match="the disk is full"):
        export_run(demo_result, full_disk, name="demo")
    assert _outputs(full_disk) == []  # no partial file, no temporary file


def test_disk_full_injected(demo_result, tmp_path, monkeypatch):
    """For machines where a tiny filesystem cannot be mounted: the second file fails with ENOSPC (injected),
    and the first one, already written, is removed too."""
    import cropcore.products.export as export

    real, calls = export.cog_translate, []

    def fill_up(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "cog_translate", fill_up)
    with pytest.raises(ExportError, match="the disk is full"):
        export_run(demo_result, tmp_path, name="demo")
    assert _outputs(tmp_path) == []


def test_destination_not_writable(demo_result, stac_api, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="choose a folder you can write to"):
        export_run(demo_result, blocker / "maps", name="demo")
    code, err = cli(capsys, *predict_args(stac_api, blocker / "maps" / "demo.tif"))
    assert code == 2 and len(err) == 1 and "cannot write" in err[0]
    read_only = tmp_path / "ro"
    if _mount_tmpfs(read_only, "ro,size=64k"):  # root ignores permissions, not a read-only filesystem
        try:
            with pytest.raises(ExportError, match="Read-only file system"):
                write_cog(demo_result.prediction["class"], read_only / "demo.tif")
        finally:
            subprocess.run(["umount", "-l", str(read_only)], check=False)


@pytest.mark.parametrize("name", ["../escape", "sub/demo", "..", ".hidden", ""])
def test_file_name_with_path_traversal_is_refused(demo_result, tmp_path, name):
    out = tmp_path / "maps"
    with pytest.raises(ConfigError, match="plain name"):
        export_run(demo_result, out, name=name)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_export_leaves_no_file(demo_result, stac_api, tmp_path, monkeypatch, capsys):
    """Ctrl-C cannot be timed reliably: a KeyboardInterrupt is injected while the confidence COG is written."""
    import cropcore.products.export as export

    real, calls = export.cog_translate, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(export, "cog_translate", interrupted)
    code, err = cli(capsys, *predict_args(stac_api, tmp_path / "demo.tif"))
    assert code == 130 and err[-1] == "cropcore predict: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_interrupted_dashboard_run_keeps_the_cache_consistent(stac_api, monkeypatch):
    """A run that dies half way (an unexpected error injected into inference) shows one message, stores
    nothing, and the next run of the same parameters works and is cached."""
    import cropcore.inference.predict as infer

    runs._store().clear()
    real = infer.predict_map

    def broken(*args, **kwargs):
        raise RuntimeError("worker died (injected)")

    monkeypatch.setattr(infer, "predict_map", broken)
    at = page(CROP_MAP, monkeypatch)
    at = run_button(at).click().run()
    assert not at.exception and len(at.error) == 1 and "Unexpected error (RuntimeError" in at.error[0].value
    assert "cropcore.run" not in at.session_state and len(runs._store()) == 0
    monkeypatch.setattr(infer, "predict_map", real)
    at = run_button(at).click().run()
    assert not at.exception and not at.error
    assert len(runs._store()) == 1 and at.session_state["cropcore.run"] is next(iter(runs._store().values()))


def test_unexpected_cli_error_is_one_line_and_verbose_shows_the_traceback(stac_api, tmp_path):
    code = ("import sys, cropcore.pipeline as p; from cropcore.cli import main\n"
            "p.run = lambda *a, **k: 1 / 0\nsys.exit(main(sys.argv[1:]))")
    args = [sys.executable, "-c", code, *predict_args(stac_api, tmp_path / "m.tif")]
    quiet = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines()[-1].startswith("cropcore predict: unexpected error: ZeroDivisionError")
    assert "Traceback" not in quiet.stderr
    verbose = subprocess.run([*args[:3], "--verbose", *args[3:]], capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr
