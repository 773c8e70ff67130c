"""How inference runs (:class:`InferenceOptions`, defaults written once) and what its outputs mean.

The pipeline, the predict CLI, the dashboard and the benchmarks all take their defaults from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cropcore import settings
from cropcore.errors import ConfigError

#: Class value of pixels without any input data.
NODATA = 255
#: Class value of pixels whose calibrated confidence is below the run's minimum confidence ("uncertain").
UNCERTAIN = 254
#: Height in pixels of the loaded cube's dask chunks (see :func:`cube_chunks`).
CHUNK_ROWS = 512

#: Where preprocessing may run (see :attr:`InferenceOptions.preprocess_on`).
PREPROCESS_ON = ("auto", "cpu", "device")
#: ``True``: bf16 on GPUs that support it (else fp16) and on CPUs with native bf16 (else fp32); or a precision
#: by name (``"bf16"``, ``"fp16"``, ``"fp32"``); ``False`` = ``"fp32"``.
AmpSpec = bool | str


@dataclass(frozen=True)
class InferenceOptions:
    """Tiling, batching, devices and precision of :func:`~cropcore.inference.predict.predict_map`.

    ``tile`` and ``overlap`` in pixels; tiles are read in column strips ``strip`` pixels wide (``None``: the
    whole width), which bounds input memory; ``batch_size`` tiles per model call; ``devices``: ``"auto"``
    (every CUDA device, else the CPU), ``"cpu"``, ``"cpu:N"`` or ``"cuda:0,cuda:1"``; ``amp``: see
    :data:`AmpSpec`. ``min_confidence`` (0-1): pixels whose calibrated confidence is below it are
    :data:`UNCERTAIN` (``None``: the checkpoint's calibration, 0 for an uncalibrated checkpoint).
    ``scheduler``: the address of a dask.distributed scheduler (``tcp://host:8786``) whose workers run the
    strips (:mod:`cropcore.inference.cluster`; ``None``: ``CROPCORE_DASK_SCHEDULER`` when it holds an address,
    else this machine; see :meth:`cluster_address`). ``preprocess_on``: where compositing, gap filling and
    normalisation run (:func:`~cropcore.pipeline.run`): ``"cpu"`` (fused numba kernels, as the cube is loaded),
    ``"device"`` (on the inference device, chunk by chunk, with torch; the CPU only decodes) or ``"auto"``:
    ``"device"`` for cubes too large to keep in memory mapped on CUDA devices on this machine, else ``"cpu"``.
    """

    tile: int = 64
    overlap: int = 16
    strip: int | None = 512
    batch_size: int = 4
    devices: str | Sequence[str] = "auto"
    amp: AmpSpec = True
    min_confidence: float | None = None
    scheduler: str | None = None
    preprocess_on: str = "auto"

    def __post_init__(self) -> None:
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise ConfigError(f"need tile > overlap >= 0, got tile={self.tile}, overlap={self.overlap}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.strip is not None and self.strip < self.tile:
            raise ConfigError(f"the strip width ({self.strip} px) must be at least the tile size ({self.tile} px)")
        if self.min_confidence is not None:
            check_min_confidence(self.min_confidence)
        if self.preprocess_on not in PREPROCESS_ON:
            raise ConfigError(f"preprocess_on must be one of {PREPROCESS_ON}, got {self.preprocess_on!r}")
        if self.scheduler is not None and not is_address(self.scheduler):
            raise ConfigError(f"the scheduler must be an address such as tcp://host:8786, got {self.scheduler!r}")

    def cluster_address(self) -> str | None:
        """The scheduler whose workers run the strips: :attr:`scheduler`, else ``CROPCORE_DASK_SCHEDULER`` when it
        is an address (not ``threads``, ``sync`` or ``local-cluster``); ``None``: this machine runs them."""
        if self.scheduler is not None:
            return self.scheduler
        configured = settings.dask_scheduler()
        return configured if is_address(configured) else None


def is_address(value: str) -> bool:
    """Whether ``value`` names a distributed scheduler (``tcp://``, ``tls://``, ``ucx://`` or ``inproc://``)."""
    return value.startswith(("tcp://", "tls://", "ucx://", "inproc://"))


def check_min_confidence(value: float) -> float:
    """``value`` if it is a probability (0-1), else :class:`ConfigError`."""
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise ConfigError(f"the minimum confidence must be between 0 and 1, got {value}")
    return value


def cube_chunks(options: InferenceOptions) -> dict[str, int]:
    """Dask chunks of the loaded cube: as wide as the inference strips, :data:`CHUNK_ROWS` tall.

    Inference then holds about two chunk rows of one strip of input at a time, whatever the AOI's size.
    Tall chunks matter for speed: every chunk decodes whole COG blocks, so over 256 px blocks 112-row chunks
    read 2.4x slower per pixel than 448-row chunks (benchmarks/README.md).
    """
    return {"y": CHUNK_ROWS, "x": options.strip or -1}
