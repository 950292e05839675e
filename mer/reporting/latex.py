"""The sweep tables as LaTeX for papers: booktabs rules (pandas' Styler writes them), the
caption stating what each cell is and how its marked cell was picked."""

from __future__ import annotations

import re
from typing import Sequence

import pandas as pd

from mer.reporting.dataset_table import OVERALL, SCORES, column_title
from mer.reporting.paper import PAPER_TABLES, paper_figure

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "‡": r"$\ddagger$",
            "†": r"$\dagger$", "×": r"$\times$"}
_SPECIAL_RE = re.compile("|".join(map(re.escape, _SPECIAL)))
PICKED_BY_VAL = r"$^{\dagger}$"


def escape(text: object) -> str:
    return _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group()], str(text))


def booktabs(columns, rows: Sequence[Sequence[str]], caption: str, label: str, column_format: str) -> str:
    """A `table` float of cells already in LaTeX; `columns` a list, or a pandas MultiIndex for a two-row header."""
    frame = pd.DataFrame(list(rows), columns=columns)
    return frame.style.hide(axis="index").to_latex(hrules=True, caption=caption, label=label, position="t",
                                                   position_float="centering", column_format=column_format,
                                                   multicol_align="c")


def figure(mean: float, std: float) -> str:
    return f"{mean:.2f} $\\pm$ {std:.2f}"


def table_latex(sweep: str, title: str, keys: Sequence[str], rows: Sequence[dict], note: str,
                by_val: dict | None) -> str:
    """A sweep's accuracy table: mean ± std per cell, runs and seeds, the paper's figure where
    it has one; bold the best held-out mean, † `by_val`, the cell the inner validation split picks."""
    paper = PAPER_TABLES.get(sweep)
    body = []
    for row in rows:
        ours = figure(row["mean"], row["std"])
        ours = f"\\textbf{{{ours}}}" if row["best"] else ours
        ours += PICKED_BY_VAL if row is by_val else ""
        ours += r" $\ddagger$" if row["mixed_clips"] else ""
        cells = [*(escape(v) for v in row["values"]), ours, str(row["n"]), ",".join(map(str, row["seeds"]))]
        if paper:
            value = paper_figure(sweep, row["values"])
            cells.append(f"{value:.2f}" if value is not None else "")
        body.append(cells)
    header = [*(escape(k) for k in keys), r"Accuracy (\%)", "Runs", "Seeds"] + ([r"Paper (\%)"] if paper else [])
    picks = r" $\dagger$: the cell the inner validation split picks (best mean val/acc\_best)." if by_val else ""
    caption = f"{escape(title)}. Held-out accuracy (\\%). {escape(note)}{picks}"
    return booktabs(header, body, caption, f"tab:{sweep}", "l" * len(keys) + "r" * (len(header) - len(keys)))


def table6_latex(entries: Sequence[tuple[str, float, bool]], caption: str, sweep: str) -> str:
    """Table VI: (method, accuracy %, is ours) rows, ours in bold."""
    body = [[f"\\textbf{{{escape(name)}}}" if ours else escape(name), f"{value:.2f}"] for name, value, ours in entries]
    return booktabs(["Method", r"Accuracy (\%)"], body, escape(caption), f"tab:{sweep}_table6", "lr")


def dataset_latex(title: str, keys: Sequence[str], datasets: Sequence[str], rows: Sequence[dict], note: str,
                  sweep: str) -> str:
    """Per-dataset UF1 and UAR (%), a column pair per dataset and one for all pooled, as MEGC papers print them."""
    groups = [*datasets, OVERALL]
    columns = pd.MultiIndex.from_tuples([*(("", escape(k)) for k in keys),
                                         *((column_title(d), s.upper()) for d in groups
                                           for s in SCORES), ("", "Runs")])
    body = [[*(escape(v) for v in row["values"]),
             *("" if row[d, s] is None else figure(*row[d, s][:2]) for d in groups for s in SCORES), str(row["n"])]
            for row in rows]
    caption = (f"{escape(title)}: UF1 and UAR (\\%) on each dataset's held-out clips and on all of them pooled "
               f"(overall), mean $\\pm$ std over the runs of each cell. {escape(note)}")
    return booktabs(columns, body, caption, f"tab:{sweep}_datasets", "l" * len(keys) + "r" * (2 * len(groups) + 1))
