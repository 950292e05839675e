"""Figures per dataset of a composite, as MEGC and cross-dataset papers print them: one row
per cell, UF1 and UAR for each dataset tested and for all of them pooled, each the mean ±
std over the cell's runs (seeds)."""

from __future__ import annotations

import re
import statistics
from typing import Sequence

# MEGC's column order and names; another dataset follows, under its own name.
DATASET_TITLES = {"smic": "SMIC", "casme2": "CASME II", "samm": "SAMM"}
OVERALL = "overall"
SCORES = ("uf1", "uar")
_PER_DATASET = re.compile(r"^(?:pooled/)?test/([^/]+)/(uf1|uar)$")


def run_datasets(run) -> set[str]:
    """The datasets `run` was scored on one by one (`pooled/test/<dataset>/uf1`, `test/<dataset>/uf1`)."""
    return {m.group(1) for m in map(_PER_DATASET.match, run.data.metrics) if m}


def dataset_figure(run, dataset: str, score: str) -> float | None:
    """A run's `score` on `dataset` (or on every dataset pooled, for OVERALL): over folds the
    pooled figure, for one fold its own."""
    part = score if dataset == OVERALL else f"{dataset}/{score}"
    return next((run.data.metrics[m] for m in (f"pooled/test/{part}", f"test/{part}") if m in run.data.metrics), None)


def ordered_datasets(names: set[str]) -> list[str]:
    return [d for d in DATASET_TITLES if d in names] + sorted(names - set(DATASET_TITLES))


def dataset_rows(grouped: dict[tuple, list]) -> tuple[list[str], list[dict]]:
    """(datasets in column order, one row per cell: `values` and, per (dataset, score), the
    (mean, std, runs) over the cell's runs in percent, or None where none was scored)."""
    datasets = ordered_datasets(set().union(*(run_datasets(r) for members in grouped.values() for r in members)))
    rows = []
    for values, members in grouped.items():
        row = {"values": values, "n": len(members)}
        for dataset in (*datasets, OVERALL):
            for score in SCORES:
                found = [100 * v for v in (dataset_figure(r, dataset, score) for r in members) if v is not None]
                row[dataset, score] = ((statistics.fmean(found), statistics.stdev(found) if len(found) > 1 else 0.0,
                                        len(found)) if found else None)
        rows.append(row)
    return datasets, rows


def column_title(dataset: str) -> str:
    return DATASET_TITLES.get(dataset, "Overall" if dataset == OVERALL else dataset)


def figure_text(cell) -> str:
    return "" if cell is None else f"{cell[0]:.2f} ± {cell[1]:.2f}"


def dataset_markdown(title: str, keys: Sequence[str], datasets: Sequence[str], rows: Sequence[dict], note: str) -> str:
    columns = [*datasets, OVERALL]
    header = [*keys, *(f"{column_title(d)} {s.upper()} %" for d in columns for s in SCORES), "runs"]
    lines = [f"### {title}: per dataset", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        figures = [figure_text(row[d, s]) for d in columns for s in SCORES]
        lines.append("| " + " | ".join([*(str(v) for v in row["values"]), *figures, str(row["n"])]) + " |")
    return "\n".join(lines) + f"\n\n{note}\n"
