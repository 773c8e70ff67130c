"""The GPU benchmark script: refuses clearly without CUDA, and its code runs end to end on the CPU."""

import json
import subprocess
import sys

import pytest
import torch

from cropcore.inference.devices import cpu_has_native_bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_gpu_bench_without_cuda_says_so():
    proc = subprocess.run([sys.executable, "-m", "cropcore", "bench", "gpu"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr


@pytest.mark.slow
def test_gpu_bench_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, "-m", "cropcore", "bench", "gpu", "--device", "cpu", "--quick", "--out", str(out)],
                   check=True, capture_output=True, text=True)
    result = json.loads(out.read_text())
    native = ["bf16"] if cpu_has_native_bf16() else []  # AMP on a CPU means bf16 only where it is native
    assert [r["precision"] for r in result["model"]] == ["fp32", *native]
    assert all(r["model_img_per_s"] > 0 and r["runner_img_per_s"] > 0 for r in result["model"])
    assert result["scaling"][0]["devices"] == "cpu" and result["scaling"][0]["speedup"] == 1
