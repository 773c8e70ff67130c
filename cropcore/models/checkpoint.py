"""Small, safe model checkpoints: a plain dict of tensors plus JSON metadata, read with ``weights_only``.

File layout (``torch.save`` of a dict): ``{"format": FORMAT, "state_dict": {name: tensor},
"meta": "<json>"}``; the JSON is :meth:`ModelMeta.to_dict <cropcore.models.meta.ModelMeta.to_dict>`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from cropcore.errors import CheckpointError
from cropcore.models.meta import ModelMeta
from cropcore.models.registry import build_model, model_kind
from cropcore.settings import home

FORMAT = "cropcore-checkpoint/1"
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def save_checkpoint(path: str | Path, model: nn.Module, meta: ModelMeta) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` (fp32 tensors, JSON metadata, no pickled objects)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "state_dict": state, "meta": json.dumps(meta.to_dict())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def resolve(path_or_name: str | Path) -> Path:
    """Return the file for a path, or for the name of a checkpoint in :func:`list_checkpoints`."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    known = list_checkpoints()
    if str(path_or_name) in known:
        return known[str(path_or_name)]
    raise CheckpointError(f"no checkpoint at {path_or_name!r}; give a file or one of: {', '.join(known)}")


def list_checkpoints() -> dict[str, Path]:
    """Checkpoints by name: the shipped ones (``cropcore/checkpoints``), then the user's own models
    (``CROPCORE_HOME/models``, written by ``cropcore train --labels``); a shipped name hides a user's file."""
    shipped = {p.stem: p for p in sorted(CHECKPOINT_DIR.glob("*.pt"))}
    own = {p.stem: p for p in sorted((home() / "models").glob("*.pt")) if p.stem not in shipped}
    return {**shipped, **own}


def load_checkpoint(
    path_or_name: str | Path,
    *,
    bands: list[str] | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, ModelMeta]:
    """Load a checkpoint safely (``weights_only=True``) and return ``(model in eval mode, meta)``.

    ``meta.sha256`` is the file's checksum.

    With ``bands`` (or ``num_classes``), check that the model takes exactly these bands in this order
    (or predicts that many classes) and raise :class:`CheckpointError` otherwise.
    """
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
    meta = _parse_meta(payload.get("meta"), path).with_sha256(_sha256(path))
    if bands is not None and list(bands) != list(meta.bands):
        raise CheckpointError(f"{path} expects bands {list(meta.bands)}, got {list(bands)}")
    if num_classes is not None and num_classes != meta.num_classes:
        raise CheckpointError(f"{path} predicts {meta.num_classes} classes, not {num_classes}")
    try:
        model = build_model(meta.architecture, **meta.model_kwargs)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit model {meta.architecture!r}: {exc}") from None
    return model.eval(), meta


def _parse_meta(raw: object, path: Path) -> ModelMeta:
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds no readable metadata; re-save it with cropcore.models.save_checkpoint")
    try:
        kind = model_kind(str(data.get("model")))
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    return ModelMeta.from_dict(data, kind=kind, where=str(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


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
