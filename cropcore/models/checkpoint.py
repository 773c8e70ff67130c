"""Small, safe model checkpoints: a plain dict of tensors plus JSON metadata, read with ``weights_only``.

File layout (``torch.save`` of a dict): ``{"format": FORMAT, "state_dict": {name: tensor},
"meta": "<json>"}``. The metadata holds ``model`` and ``model_kwargs`` (for :func:`build_model`),
``bands`` (band order), ``time_axis``, ``norm`` (per-band ``mean``/``std`` of reflectance) and
``legend`` (list of ``{"id", "name", "color"}``), and may carry training details and metrics.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cropcore.errors import CheckpointError

FORMAT = "cropcore-checkpoint/1"
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
REQUIRED_META = ("model", "model_kwargs", "bands", "time_axis", "norm", "legend")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model``'s weights and JSON-able ``meta`` to ``path`` (fp32 tensors, no pickled objects)."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"checkpoint metadata lacks {missing}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "state_dict": state, "meta": json.dumps(meta)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def resolve(path_or_name: str | Path) -> Path:
    """Return the file for a path or the name of a shipped checkpoint (``cropcore/checkpoints/<name>.pt``)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = CHECKPOINT_DIR / f"{path_or_name}.pt"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
    raise CheckpointError(f"no checkpoint at {path_or_name!r}; give a file or one of: {', '.join(names)}")


def load_checkpoint(
    path_or_name: str | Path,
    *,
    bands: list[str] | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint safely (``weights_only=True``) and return ``(model in eval mode, meta)``.

    With ``bands`` (or ``num_classes``), check that the model takes exactly these bands in this order
    (or predicts that many classes) and raise :class:`CheckpointError` otherwise.
    """
    from cropcore.models import build_model

    path = resolve(path_or_name)
    _check_archive(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), None)
        if refused is None:
            raise CheckpointError(f"{path} is corrupted: {_last_line(exc)}; re-download or re-save it") from None
        raise CheckpointError(
            f"{path} holds Python objects that weights-only loading refuses ({refused}); only load files you "
            "trust, and re-save them with cropcore.models.save_checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file (save it with cropcore.models.save_checkpoint)")
    meta = json.loads(payload["meta"])
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CheckpointError(f"{path} metadata lacks {missing}")
    _validate(meta, path)
    if bands is not None and list(bands) != meta["bands"]:
        raise CheckpointError(f"{path} expects bands {meta['bands']}, got {list(bands)}")
    if num_classes is not None and num_classes != len(meta["legend"]):
        raise CheckpointError(f"{path} predicts {len(meta['legend'])} classes, not {num_classes}")
    try:
        model = build_model(meta["model"], **meta["model_kwargs"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit model {meta['model']!r}: {exc}") from None
    return model.eval(), meta


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _check_archive(path: Path) -> None:
    """Refuse a file that is not an intact ``torch.save`` zip archive (every member's CRC is checked)."""
    try:
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is corrupted or not a checkpoint (not the zip archive torch.save "
                                  "writes); re-download or re-save it")
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"{path} is corrupted: {_last_line(exc)}; re-download or re-save it") from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupted ({bad} fails its checksum); re-download or re-save it")


def _validate(meta: dict[str, Any], path: Path) -> None:
    kw = meta["model_kwargs"]
    n_bands = len(meta["bands"])
    if kw.get("in_channels") != n_bands:
        raise CheckpointError(f"{path}: model takes {kw.get('in_channels')} bands but meta lists {n_bands}")
    if kw.get("num_classes") != len(meta["legend"]):
        n_legend = len(meta["legend"])
        raise CheckpointError(f"{path}: predicts {kw.get('num_classes')} classes, legend has {n_legend}")
    if [c["id"] for c in meta["legend"]] != list(range(len(meta["legend"]))):
        raise CheckpointError(f"{path}: legend ids must be 0..K-1 in order")
    for key in ("mean", "std"):
        if len(meta["norm"].get(key, ())) != n_bands:
            raise CheckpointError(f"{path}: norm[{key!r}] must have one value per band ({n_bands})")
