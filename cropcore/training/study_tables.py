"""The generalisation study's tables (markdown), written between markers into the model card."""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

START, END = "<!-- study:{name}:start -->", "<!-- study:{name}:end -->"
METRICS = (("oa", "OA"), ("macro_f1", "macro-F1"), ("crop_balanced_accuracy", "crop/non-crop bal. acc."),
           ("noncrop_recall", "non-crop recall"), ("ece", "ECE"))
RF = "RandomForest"


def _rows(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, split, metrics) for every network, and the RandomForest once per split."""
    rows, rf_seen = [], set()
    for r in records:
        rows.append((r["model"], r["split"], r["results"]["network"]))
        if r["split"] not in rf_seen and not r.get("variant"):
            rf_seen.add(r["split"])
            rows.append((RF, r["split"], r["results"]["random_forest"]))
    return rows


def _stat(values: Iterable[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"


def _models(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(m for m, _, _ in rows))


def sample_table(records: list[dict[str, Any]]) -> str:
    """Split by sample: mean ± sd over the seeds of each metric, per model."""
    rows = [r for r in _rows(records) if r[1].startswith("sample")]
    seeds = len({s for _, s, _ in rows})
    head = "| model | " + " | ".join(label for _, label in METRICS) + " | ECE before calibration |"
    lines = [f"Split by sample ({seeds} seeds, 70/10/20, mean ± sd):", "", head,
             "|" + "---|" * (len(METRICS) + 2)]
    for model in _models(rows):
        mine = [m for name, _, m in rows if name == model]
        cells = [_stat(m.get(key) for m in mine) for key, _ in METRICS] + [_stat(m.get("ece_raw") for m in mine)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _region(split: str) -> str:
    return split.removeprefix("holdout ").split(" seed ")[0]


def holdout_table(records: list[dict[str, Any]], *, variants: bool = False) -> str:
    """Leave one region out: macro-F1 / crop vs non-crop balanced accuracy / non-crop recall per held-out
    region (mean over its seeds), their mean over regions, and the sd over seeds of the regions' mean macro-F1."""
    rows = [r for r in _rows(records) if r[1].startswith("holdout")]
    regions = list(dict.fromkeys(_region(s) for _, s, _ in rows))
    seeds = len({s.split(" seed ")[-1] for _, s, _ in rows})
    keys = ("macro_f1", "crop_balanced_accuracy", "noncrop_recall")
    title = "Augmentation and input variants, leave one region out" if variants else "Leave one region out"
    lines = [f"{title} ({seeds} seed(s) per region; cells: macro-F1 / crop vs non-crop balanced accuracy / "
             "non-crop recall):", "",
             "| model | " + " | ".join(f"test {r}" for r in regions) + " | mean | macro-F1 sd over seeds |",
             "|" + "---|" * (len(regions) + 3)]
    for model in _models(rows):
        cells, per_region = [], {k: [] for k in keys}
        by_seed: dict[str, list[float]] = {}
        for region in regions:
            found = [(s, m) for name, s, m in rows if name == model and _region(s) == region]
            if not found:
                cells.append("–")
                continue
            means = {k: statistics.mean(m[k] for _, m in found if m.get(k) is not None)
                     if any(m.get(k) is not None for _, m in found) else None for k in keys}
            for k in keys:
                per_region[k].append(means[k])
            for s, m in found:
                by_seed.setdefault(s.split(" seed ")[-1], []).append(m["macro_f1"])
            cells.append(" / ".join("–" if means[k] is None else f"{means[k]:.2f}" for k in keys))
        mean = " / ".join(f"{statistics.mean(v):.3f}" if v and None not in v else "–" for v in per_region.values())
        seed_means = [statistics.mean(v) for v in by_seed.values() if len(v) == len(regions)]
        spread = f"{statistics.stdev(seed_means):.3f}" if len(seed_means) > 1 else "–"
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {mean} | {spread} |")
    return "\n".join(lines)


def per_class_table(records: list[dict[str, Any]]) -> str:
    """Per-class F1, mean over the split-by-sample seeds."""
    rows = [r for r in _rows(records) if r[1].startswith("sample")]
    if not rows:
        return ""
    names = rows[0][2]["class_names"]
    lines = ["Per-class F1, split by sample (mean over seeds):", "", "| model | " + " | ".join(names) + " |",
             "|" + "---|" * (len(names) + 1)]
    for model in _models(rows):
        mine = [m for name, _, m in rows if name == model]
        lines.append(f"| {model} | " + " | ".join(
            f"{statistics.mean(m['per_class'][n]['f1'] for m in mine):.3f}" for n in names) + " |")
    return "\n".join(lines)


def tables(records: list[dict[str, Any]], *, variant_base: str | None = None) -> str:
    """All tables of a study, as markdown; the variants' table starts with their base model's row."""
    main = [r for r in records if not r.get("variant")]
    var = [r for r in records if r.get("variant")]
    var = [r for r in main if r["model"] == variant_base and r["split"].startswith("holdout")] + var if var else []
    parts = [sample_table(main), holdout_table(main), per_class_table(main)]
    if var:
        parts.append(holdout_table(var, variants=True))
    return "\n\n".join(p for p in parts if p)


def write_into(card: Path, name: str, text: str) -> None:
    """Replace the text between the study's markers in ``card`` (appended at the end when absent)."""
    start, end = START.format(name=name), END.format(name=name)
    body = card.read_text()
    block = f"{start}\n{text}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    body = pattern.sub(lambda _: block, body) if pattern.search(body) else body.rstrip() + f"\n\n{block}\n"
    card.write_text(body)
