"""The ``catalog`` and ``search`` commands, run as a user would (a real subprocess)."""

import json
import subprocess
import sys


def cropcore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropcore", *args], capture_output=True, text=True, timeout=120)


def test_catalog_status_reports_a_healthy_api(stac_api):
    proc = cropcore("catalog", "status")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["url"] == stac_api and status["healthy"] and status["postgres"] and status["built"]


def test_serve_is_idempotent(stac_api):
    proc = cropcore("catalog", "serve")
    assert proc.returncode == 0 and stac_api in proc.stdout


def test_search_lists_the_demo_scenes(stac_api, demo_bbox):
    proc = cropcore("search", "--bbox", *map(str, demo_bbox), "--start", "2021-03-01", "--end", "2021-04-30")
    assert proc.returncode == 0, proc.stderr
    assert "worldcereal-be-2021-03" in proc.stdout and "worldcereal-be-2021-04" in proc.stdout
    assert "2 scenes" in proc.stdout


def test_search_json_is_an_item_collection(stac_api, demo_bbox):
    proc = cropcore("search", "--bbox", *map(str, demo_bbox), "--start", "2021-03-01", "--end", "2021-03-31", "--json")
    assert json.loads(proc.stdout)["features"][0]["id"] == "worldcereal-be-2021-03"


def test_user_errors_exit_2_with_one_line(stac_api, demo_bbox, tmp_path):
    proc = cropcore("search", "--bbox", *map(str, demo_bbox), "--start", "2021-05-01", "--end", "2021-04-01")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "reversed" in proc.stderr
    bad = tmp_path / "aoi.geojson"
    bad.write_text("{oops")
    proc = cropcore("search", "--aoi", str(bad), "--start", "2021-01-01", "--end", "2021-02-01")
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    missing = str(tmp_path / "missing.geojson")
    proc = cropcore("search", "--aoi", missing, "--start", "2021-01-01", "--end", "2021-02-01")
    assert proc.returncode == 2 and "cannot read the AOI file" in proc.stderr


def test_a_reader_that_leaves_early_is_no_error(stac_api):
    """`cropcore catalog list | head -1`: the closed pipe ends the command quietly (exit 141), no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "cropcore", "catalog", "status"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""
