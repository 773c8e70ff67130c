"""A 3-D convolution that takes oneDNN's kernel on the CPU whatever the batch size.

PyTorch's dispatcher sends a float32 CPU convolution with batch 1 and fewer than 20,480 elements in
``input.shape[:4]`` to its reference ``slow_conv3d`` (a heuristic tuned for 2-D convolutions: for 5-D
inputs it sees ``B * C * T * H`` and ignores ``W``). For AgrUNet at batch 1 that is every layer with few
channels or a short series: 5-15 GFLOP/s on the development CPU where oneDNN's kernel gives 45-75
(``benchmarks/bench_model.py``). :class:`Conv3d` calls oneDNN directly in exactly those conditions; the
result agrees with the default path to float32 rounding and the parameters are those of ``nn.Conv3d``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def onednn_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether the direct oneDNN call is valid: float32 on a CPU with oneDNN enabled, outside autocast, not
    being traced by ``torch.compile`` (its fake tensors cannot enter oneDNN; the compiled graph picks its own
    kernels)."""
    return (
        not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
    )


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (zero padding) that runs oneDNN on float32 CPU input at any batch size."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode == "zeros" and not isinstance(self.padding, str) and onednn_applies(input, weight):
            return torch.ops.aten.mkldnn_convolution(
                input, weight, bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super()._conv_forward(input, weight, bias)
