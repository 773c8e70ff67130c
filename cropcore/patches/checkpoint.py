"""Patch-classifier checkpoints: ``torch.save`` of ``{"format": FORMAT, "state_dict": {name: tensor},
"meta": "<json>"}``, read back with ``weights_only=True``.

They end in ``.pth`` (the time-series model lists read ``*.pt``); the shipped ones are
``cropcore/checkpoints/patch_*.pth``. ``meta`` holds the architecture and its kwargs, the task, class names,
bands, the band statistics of the training split (computed once, applied inside :class:`PatchClassifier`),
decision thresholds tuned on validation, held-out patch names and metrics. Weights may be stored as fp16
(``store_fp16``) and are always loaded into an fp32 model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cropcore.errors import CheckpointError
from cropcore.models.checkpoint import CHECKPOINT_DIR
from cropcore.patches.registry import build_patch_model

FORMAT = "cropcore-patch-checkpoint/1"
SUFFIX = ".pth"


def save_patch_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any], *, fp16: bool = False) -> Path:
    """Write ``model``'s weights (fp16 floats with ``fp16``) and the JSON ``meta`` to ``path``."""
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().clone()
        state[k] = v.half() if fp16 and v.is_floating_point() else v
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "state_dict": state, "meta": json.dumps(meta)}, path)
    return path


def list_patch_checkpoints() -> dict[str, Path]:
    """Shipped patch checkpoints by name (``patch_<name>.pth`` in ``cropcore/checkpoints``)."""
    return {p.stem: p for p in sorted(CHECKPOINT_DIR.glob(f"patch_*{SUFFIX}"))}


def resolve_patch(path_or_name: str | Path) -> Path:
    """The file for a path or a shipped name."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    known = list_patch_checkpoints()
    if str(path_or_name) in known:
        return known[str(path_or_name)]
    raise CheckpointError(f"no patch checkpoint at {path_or_name!r}; give a file or one of: {', '.join(known)}")


def is_patch_checkpoint(path_or_name: str | Path) -> bool:
    """Whether ``path_or_name`` names a patch-classifier checkpoint (a shipped name or a file in this format)."""
    try:
        path = resolve_patch(path_or_name)
    except CheckpointError:
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def load_patch_checkpoint(path_or_name: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """``(fp32 model in eval mode, meta)``; a file in another format raises :class:`CheckpointError`."""
    path = resolve_patch(path_or_name)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file (write it with save_patch_checkpoint)")
    meta = json.loads(payload["meta"])
    try:
        model = build_patch_model(meta["architecture"], **meta["model_kwargs"])
        model.load_state_dict(payload["state_dict"])  # fp16 tensors are copied into the fp32 parameters
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit patch model {meta.get('architecture')!r}: {exc}") from None
    return model.float().eval(), meta
