"""The generalisation study: every model and the RandomForest, split by sample (several seeds) and leave one
region out, plus augmentation variants; results saved as JSON and as the model card's tables.

A study config (``configs/study_generalisation.yaml``) names the training configs to compare, the seeds, the
regions to hold out and the variants (overrides of one model's config). Each run is a normal training run
(:func:`cropcore.training.run.run`) without a checkpoint; finished runs are kept under
``CROPCORE_HOME/study/<name>/`` and reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from cropcore.errors import ConfigError
from cropcore.settings import PROJECT_ROOT, home
from cropcore.training.config import TrainConfig, load_config


@dataclass(frozen=True)
class Study:
    """What to compare: ``models`` (label -> training config), seeds of the split by sample, held-out regions
    (each trained with every seed of ``holdout_seeds``), ``variants`` of ``variant_base`` (label -> config
    overrides, run leave-one-region-out only)."""

    name: str
    models: dict[str, str | dict[str, Any]]  # label -> config path, or {config, seeds, holdout_seeds}
    seeds: tuple[int, ...]
    holdouts: tuple[str, ...]
    holdout_seeds: tuple[int, ...] = (0,)
    variant_base: str | None = None
    variants: dict[str, dict[str, Any]] | None = None
    epochs: int | None = None  # override every config's max_epochs (quick checks only)


def load_study(path: str | Path) -> Study:
    """Read a study YAML; unknown keys raise :class:`ConfigError`."""
    raw = yaml.safe_load(Path(path).read_text())
    try:
        study = Study(**{**raw, "seeds": tuple(raw.get("seeds", (0, 1, 2))),
                         "holdouts": tuple(raw.get("holdouts", ())),
                         "holdout_seeds": tuple(raw.get("holdout_seeds", (0,)))})
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if study.variants and study.variant_base not in study.models:
        raise ConfigError(f"{path}: variant_base must be one of the models {sorted(study.models)}")
    return study


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def split_config(config: TrainConfig, *, seed: int | None = None, holdout: str | None = None,
                 overrides: dict[str, Any] | None = None, epochs: int | None = None) -> TrainConfig:
    """``config`` for one run of the study: no checkpoint written, the split's seed or held-out region."""
    raw = _merge({k: getattr(config, k) for k in config.__dataclass_fields__}, overrides or {})
    data = dict(raw["data"])
    if holdout is not None:
        data["holdout"] = holdout
    trainer = dict(raw["trainer"], **({"max_epochs": epochs} if epochs else {}))
    return replace(TrainConfig(**raw), data=data, trainer=trainer, output=None,
                   seed=config.seed if seed is None else seed)


def plan(study: Study) -> list[tuple[str, str, TrainConfig]]:
    """Every run of the study as (model label, split label, config); variants' labels start with the base's."""
    runs = []
    for label, entry in study.models.items():
        path, seeds, holdout_seeds = _entry(entry, study.seeds, study.holdout_seeds)
        config = load_config(PROJECT_ROOT / path)
        runs += [(label, f"sample seed {s}", split_config(config, seed=s, epochs=study.epochs)) for s in seeds]
        runs += [(label, f"holdout {r} seed {s}", split_config(config, seed=s, holdout=r, epochs=study.epochs))
                 for r in study.holdouts for s in holdout_seeds]
    if study.variants and study.variant_base:
        base = load_config(PROJECT_ROOT / _entry(study.models[study.variant_base], (), ())[0])
        for label, over in study.variants.items():
            runs += [(f"{study.variant_base} {label}", f"holdout {r} seed {s}",
                      split_config(base, seed=s, holdout=r, overrides=over, epochs=study.epochs))
                     for r in study.holdouts for s in study.holdout_seeds]
    return runs


def _entry(entry: str | dict[str, Any], seeds: tuple[int, ...],
           holdout_seeds: tuple[int, ...]) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """A model's config path, its split-by-sample seeds and its leave-one-region-out seeds (the study's unless
    the entry says)."""
    if isinstance(entry, str):
        return entry, seeds, holdout_seeds
    unknown = sorted(set(entry) - {"config", "seeds", "holdout_seeds"})
    if unknown or "config" not in entry:
        raise ConfigError(f"a model entry is a config path or {{config, seeds, holdout_seeds}}; got {entry}")
    return entry["config"], tuple(entry.get("seeds", seeds)), tuple(entry.get("holdout_seeds", holdout_seeds))


def only(study: Study, labels: list[str]) -> Study:
    """``study`` restricted to the models ``labels`` (no variants unless their base is kept)."""
    unknown = sorted(set(labels) - set(study.models))
    if unknown:
        raise ConfigError(f"no model {unknown} in the study; it has {sorted(study.models)}")
    keep_variants = study.variant_base in labels
    return replace(study, models={k: v for k, v in study.models.items() if k in labels},
                   variants=study.variants if keep_variants else None,
                   variant_base=study.variant_base if keep_variants else None)


def _key(config: TrainConfig) -> str:
    raw = json.dumps({k: getattr(config, k) for k in config.__dataclass_fields__}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def run_study(study: Study, *, report: Callable[[str], None] = print,
              runner: Callable[[TrainConfig], dict[str, Any]] | None = None,
              shard: tuple[int, int] = (0, 1)) -> list[dict[str, Any]]:
    """Run (or reuse) every run of ``study``; returns one record per run with both models' results.

    ``shard=(i, n)`` runs only every n-th run from the i-th (for n processes side by side, each with its
    share of the cores); its records are the finished runs of that share.
    """
    if runner is None:
        from cropcore.training.run import run as runner
    cache = home() / "study" / study.name
    cache.mkdir(parents=True, exist_ok=True)
    records = []
    runs = plan(study)
    for i, (label, split, config) in enumerate(runs, 1):
        if (i - 1) % shard[1] != shard[0]:
            continue
        key = _key(config)
        path = cache / f"{key}.json"
        config = replace(config, name=f"{study.name}_{key}")  # each run its own Lightning folder
        if path.is_file():
            record = json.loads(path.read_text())
            report(f"[{i}/{len(runs)}] {label}, {split}: reused")
        else:
            report(f"[{i}/{len(runs)}] {label}, {split}: training ...")
            results = runner(config)
            record = {"config": config.name, "results": results}
            tmp = path.with_suffix(".part")
            tmp.write_text(json.dumps(record, default=float))
            tmp.replace(path)
            net, rf = results["network"], results["random_forest"]
            report(f"    network macro-F1 {net['macro_f1']:.3f}  RF {rf['macro_f1']:.3f}  "
                   f"({results['train_seconds']} s)")
        # labels come from the study as it is now, results from the run (finished now or before)
        records.append({**record, "model": label, "split": split, "variant": label not in study.models})
    return records
