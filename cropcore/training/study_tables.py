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


def holdout_table(records: list[dict[str, Any]], *, variants: bool = False) -> str:
    """Leave one region out: macro-F1 / crop vs non-crop balanced accuracy / non-crop recall per held-out
    region, and their mean over regions."""
    rows = [r for r in _rows(records) if r[1].startswith("holdout")]
    regions = list(dict.fromkeys(s.removeprefix("holdout ") for _, s, _ in rows))
    title = "Augmentation and input variants, leave one region out" if variants else "Leave one region out"
    lines = [f"{title} (cells: macro-F1 / crop vs non-crop balanced accuracy / non-crop recall):", "",
             "| model | " + " | ".join(f"test {r}" for r in regions) + " | mean |", "|" + "---|" * (len(regions) + 2)]
    for model in _models(rows):
        cells, means = [], {k: [] for k in ("macro_f1", "crop_balanced_accuracy", "noncrop_recall")}
        for region in regions:
            found = [m for name, s, m in rows if name == model and s == f"holdout {region}"]
            if not found:
                cells.append("–")
                continue
            m = found[0]
            for k in means:
                means[k].append(m.get(k))
            cells.append(" / ".join("–" if m.get(k) is None else f"{m[k]:.2f}" for k in means))
        mean = " / ".join(f"{statistics.mean(v):.3f}" if v and None not in v else "–" for v in means.values())
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {mean} |")
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
