"""PASTIS-format patch dataset (Garnot & Landrieu, ICCV 2021) for users who have PASTIS or data laid out like it.

Layout of ``root``::

    metadata.geojson           features with properties ID_PATCH, Fold (1-5), dates-S2 ({"0": 20180917, ...})
    DATA_S2/S2_<ID_PATCH>.npy  (T, C, H, W) Sentinel-2 reflectance x 1e4, T varies per patch
    ANNOTATIONS/TARGET_<ID_PATCH>.npy  (3, H, W) targets; channel 0 is the semantic class

Items are ``(x (T, C, H, W) float32 normalised, mask (T,) bool, y (H, W) int64)``; the void label (19 in
PASTIS) becomes ``ignore_index``. :func:`collate_patches` pads a batch to its longest series and returns
``(x (B, T, C, H, W), mask (B, T), y (B, H, W))``, the batch format of
:class:`cropcore.training.module.CropModule`. :class:`cropcore.training.datamodules.PastisDataModule` serves
one cross-validation fold to ``python -m cropcore train`` (``data.kind: pastis``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from cropcore.errors import DatasetFormatError

PASTIS_VOID = 19
PASTIS_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
PASTIS_CLASSES = (
    "Background", "Meadow", "Soft winter wheat", "Corn", "Winter barley", "Winter rapeseed", "Spring barley",
    "Sunflower", "Grapevine", "Beet", "Winter triticale", "Winter durum wheat", "Fruits, vegetables, flowers",
    "Potatoes", "Leguminous fodder", "Soybeans", "Orchard", "Mixed cereal", "Sorghum",
)  # 19 = void label, ignored
PASTIS_REFERENCE_DATE = date(2018, 9, 1)
Item = tuple[Tensor, Tensor, Tensor]


def fold_split(test_fold: int, n_folds: int = 5) -> tuple[list[int], list[int], list[int]]:
    """PASTIS cross-validation: test on ``test_fold``, validate on the next fold, train on the rest."""
    if not 1 <= test_fold <= n_folds:
        raise DatasetFormatError(f"test_fold must be in 1..{n_folds}, got {test_fold}")
    val_fold = test_fold % n_folds + 1
    train = [f for f in range(1, n_folds + 1) if f not in (test_fold, val_fold)]
    return train, [val_fold], [test_fold]


def _parse_dates(raw: object, where: str) -> list[date]:
    if isinstance(raw, str):  # some exports store the dict as a JSON string
        raw = json.loads(raw)
    if not isinstance(raw, dict) or not raw:
        raise DatasetFormatError(f"{where}: 'dates-S2' must be a non-empty {{index: YYYYMMDD}} mapping")
    values = [raw[k] for k in sorted(raw, key=int)]
    try:
        return [date(int(v) // 10000, int(v) // 100 % 100, int(v) % 100) for v in values]
    except ValueError as exc:
        raise DatasetFormatError(f"{where}: bad date in 'dates-S2': {exc}") from None


def read_metadata(root: str | Path) -> list[dict[str, object]]:
    """Patches of ``root/metadata.geojson`` as ``{"id", "fold", "dates"}`` dicts (dates as ``datetime.date``)."""
    path = Path(root) / "metadata.geojson"
    if not path.is_file():
        raise DatasetFormatError(f"no metadata.geojson in {root}; is this a PASTIS-format folder?")
    try:
        features = json.loads(path.read_text())["features"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetFormatError(f"{path} is not a GeoJSON FeatureCollection: {exc}") from None
    patches = []
    for feature in features:
        props = feature.get("properties", {})
        missing = [k for k in ("ID_PATCH", "Fold", "dates-S2") if k not in props]
        if missing:
            raise DatasetFormatError(f"{path}: a feature lacks {missing}")
        where = f"{path} patch {props['ID_PATCH']}"
        patches.append({"id": int(props["ID_PATCH"]), "fold": int(props["Fold"]),
                        "dates": _parse_dates(props["dates-S2"], where)})
    return patches


class PastisDataset(Dataset):
    """Patches of the given folds (all if ``folds`` is None), z-scored with per-band ``mean``/``std``.

    ``mean``/``std`` are in the files' units (reflectance x 1e4 for PASTIS); by default they are
    estimated from up to ``norm_patches`` patches of the selected folds (use the train folds' values for
    validation and test).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        folds: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        void_label: int = PASTIS_VOID,
        ignore_index: int = -1,
        norm_patches: int = 50,
    ) -> None:
        self.root = Path(root)
        self.patches = [p for p in read_metadata(root) if folds is None or p["fold"] in folds]
        if not self.patches:
            raise DatasetFormatError(f"{root} has no patches in folds {list(folds or [])}")
        self.void_label = void_label
        self.ignore_index = ignore_index
        if mean is None or std is None:
            mean, std = self._norm_stats(norm_patches)
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __len__(self) -> int:
        return len(self.patches)

    def _load(self, kind: str, patch_id: int) -> np.ndarray:
        folder, prefix = {"data": ("DATA_S2", "S2"), "target": ("ANNOTATIONS", "TARGET")}[kind]
        path = self.root / folder / f"{prefix}_{patch_id}.npy"
        if not path.is_file():
            raise DatasetFormatError(f"missing {path} (listed in metadata.geojson)")
        return np.load(path)

    def _norm_stats(self, n: int) -> tuple[list[float], list[float]]:
        data = [self._load("data", p["id"]).astype(np.float64) for p in self.patches[:n]]
        flat = np.concatenate([d.transpose(1, 0, 2, 3).reshape(d.shape[1], -1) for d in data], axis=1)
        return flat.mean(1).tolist(), (flat.std(1) + 1e-6).tolist()

    def labels(self, index: int) -> np.ndarray:
        """Stored semantic classes (H, W) of patch ``index``, void label included."""
        return self._load("target", self.patches[index]["id"])[0]

    def dates(self, index: int) -> Tensor:
        """Acquisition dates of patch ``index`` as days since 2018-09-01 (PASTIS' reference date)."""
        return torch.tensor([(d - PASTIS_REFERENCE_DATE).days for d in self.patches[index]["dates"]])

    def __getitem__(self, index: int) -> Item:
        patch = self.patches[index]
        x = self._load("data", patch["id"])
        target = self._load("target", patch["id"])
        if x.ndim != 4 or x.shape[1] != len(self.mean) or x.shape[0] != len(patch["dates"]):
            raise DatasetFormatError(
                f"S2_{patch['id']}.npy has shape {x.shape}; expected (T={len(patch['dates'])}, "
                f"C={len(self.mean)}, H, W) to match its dates and the normalisation statistics"
            )
        y = (target[0] if target.ndim == 3 else target).astype(np.int64)
        if y.shape != x.shape[2:]:
            raise DatasetFormatError(f"TARGET_{patch['id']}.npy is {target.shape}, data is {x.shape}")
        y[y == self.void_label] = self.ignore_index
        z = (x.astype(np.float32) - self.mean[:, None, None]) / self.std[:, None, None]
        return torch.from_numpy(z), torch.ones(len(z), dtype=torch.bool), torch.from_numpy(y)


def collate_patches(batch: Sequence[Item]) -> Item:
    """Stack items with different numbers of dates: pad with zeros at the end and mask the padding."""
    t_max = max(x.shape[0] for x, _, _ in batch)
    xs, masks = [], []
    for x, mask, _ in batch:
        pad = t_max - x.shape[0]
        xs.append(torch.cat([x, x.new_zeros(pad, *x.shape[1:])]) if pad else x)
        masks.append(torch.cat([mask, mask.new_zeros(pad)]) if pad else mask)
    return torch.stack(xs), torch.stack(masks), torch.stack([y for _, _, y in batch])
