"""The paper's tables rebuilt from the tracking store alone: mean ± std over seeds per
cell, the run count behind it, the paper's figure beside ours, the best cell marked;
plots of the metric against the varied value and of training curves per cell."""

from __future__ import annotations

import csv
import io
import logging
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from mer.common.errors import MerError  # noqa: E402
from mer.common.files import atomic_write_text, json_digest  # noqa: E402
from mer.reporting.dataset_table import dataset_markdown, dataset_rows  # noqa: E402
from mer.reporting.latex import dataset_latex, table6_latex, table_latex  # noqa: E402
from mer.reporting.paper import PAPER_TABLE6, PAPER_TABLES, paper_figure  # noqa: E402
from mer.tracking.config_hash import is_setting  # noqa: E402
from mer.tracking.run_params import short_name  # noqa: E402
from mer.tracking.run_tags import COMPLETE_FILTER, CONFIG_HASH_TAG, FIXED_SETTINGS_TAG, POOLED_ROLE, SWEEP_VARIED_TAG, TEST_CLIPS_TAG  # noqa: E402

log = logging.getLogger(__name__)

# The held-out accuracy of a run's reported model: its own for one fold, pooled over folds
# for several. The paper's tables report this figure.
METRICS = ("test/acc", "pooled/test/acc")
# What an inner validation split says of the same run; the cell it would pick is shown beside.
SELECTION_METRICS = ("val/acc_best", "fold_mean/val/acc_best")
MIXED_CLIPS_MARK = "‡"  # a cell whose runs were scored on different held-out clips


def sweep_runs(client: MlflowClient, experiment_name: str, sweep: str) -> list:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise MerError(f"no MLflow experiment {experiment_name!r} in the store")
    found = client.search_runs([experiment.experiment_id], f"tags.`mer.sweep_name` = '{sweep}' and {COMPLETE_FILTER}",
                               order_by=["attributes.start_time DESC"], max_results=5000)
    # A config run again (sweep.force=true) counts once, as its newest run: resuming treats a
    # finished run of a config as that config's result, and so do the tables.
    newest = {}
    for run in counted_runs(found):
        if run.data.tags.get("mer.role") != "sweep_parent":
            newest.setdefault(run.data.tags.get(CONFIG_HASH_TAG, run.info.run_id), run)
    runs = list(newest.values())
    if not runs:
        raise MerError(f"no complete runs of sweep {sweep!r} in experiment {experiment_name!r}")
    return runs


def counted_runs(runs: list) -> list:
    """The runs a table cell or a sweep's best cell counts: one fold of several counts only
    through its cell's pooled run (`mer.reporting.folds.pool_fold_cells`), never on its own."""
    return [r for r in runs if not ("mer.fold" in r.data.tags and int(r.data.params.get("protocol.n_folds", "1")) > 1)]


# The settings a table's title states, with how each reads; the varied one is left out.
TITLE_SETTINGS = (("optim.lr", "lr {}"), ("model.dropout", "dropout {}"), ("trainer.max_epochs", "{} epochs"))


def param(run, key: str) -> str | None:
    """A run's value of config key `key`: its short param name (`lr`), or for runs of an
    older mer the dotted one (`optim.lr`)."""
    return run.data.params.get(short_name(key), run.data.params.get(key))


def not_fixed(keys: list[str]) -> list[str]:
    """Params that may differ between the runs of one table: the varied keys (by either
    name), the seed, and the per-fold facts."""
    return ["seed", "fold", *keys, *(short_name(k) for k in keys)]


def fixed_settings(run, keys: list[str]) -> str:
    """What a run holds fixed in its sweep: the tag written at run time, or for runs of an
    older mer the same read from their logged config."""
    tag = run.data.tags.get(FIXED_SETTINGS_TAG)
    if tag:
        return tag
    params = {k: v for k, v in run.data.params.items() if is_setting(k, not_fixed(keys))}
    return "params:" + json_digest(params, 16)


def comparable_runs(runs: list, keys: list[str]) -> tuple[list, list[str]]:
    """The runs of the newest settings: those that differ from the newest run only in the
    varied keys and the seed. The others are left out, each kind described by how its
    settings differ (a re-run with other epochs must not be averaged into the same cells)."""
    groups: dict[str, list] = defaultdict(list)
    for run in runs:
        groups[fixed_settings(run, keys)].append(run)
    newest = max(runs, key=lambda r: r.info.start_time)
    chosen = groups.pop(fixed_settings(newest, keys))
    reference = chosen[0].data.params
    notes = []
    for members in groups.values():
        other = members[0].data.params
        differ = [f"{k}={other.get(k)} (here {reference.get(k)})" for k in sorted(set(reference) | set(other))
                  if is_setting(k, not_fixed(keys)) and other.get(k) != reference.get(k)]
        notes.append(f"{len(members)} run(s) with other settings: {', '.join(differ[:4]) or 'an older config'}")
    return chosen, notes


def table_title(sweep: str, keys: list[str], runs: list) -> str:
    """The paper's table name, or the sweep's, and the settings the runs held fixed."""
    paper = PAPER_TABLES.get(sweep)
    name = paper["title"] if paper else f"Sweep {sweep}" + (f": {', '.join(keys)}" if keys else "")
    fixed = [form.format(param(runs[0], key)) for key, form in TITLE_SETTINGS
             if key not in keys and param(runs[0], key) is not None]
    return f"{name} ({', '.join(fixed)})" if fixed else name


def latest_parent(client: MlflowClient, experiment_name: str, sweep: str) -> str | None:
    experiment = client.get_experiment_by_name(experiment_name)
    found = client.search_runs([experiment.experiment_id], f"tags.`mer.role` = 'sweep_parent' and tags.`mer.sweep_name` = '{sweep}'",
                               order_by=["attributes.start_time DESC"], max_results=1) if experiment else []
    return found[0].info.run_id if found else None


def first_metric(run, names) -> float | None:
    return next((run.data.metrics[m] for m in names if m in run.data.metrics), None)


def accuracy(run) -> float | None:
    return first_metric(run, METRICS)


def number(text: str | None):
    """A param's value as it sorts: numbers by value, other values (a group's choice) as text."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text or ""
    return int(value) if value.is_integer() and "." not in text else value


def cells(runs, keys: list[str]) -> dict[tuple, list]:
    grouped: dict[tuple, list] = defaultdict(list)
    for run in runs:
        if accuracy(run) is not None:
            grouped[tuple(number(param(run, k)) for k in keys)].append(run)
    return dict(sorted(grouped.items()))


def cell_rows(grouped: dict[tuple, list]) -> list[dict]:
    """One row per cell, in the cells' order; the cell with the best held-out mean is the
    row marked `best` (the first of equals), the one definition tables and sweep parents share."""
    rows = []
    for values, members in grouped.items():
        accs = [100 * accuracy(r) for r in members]
        inner = [100 * v for v in (first_metric(r, SELECTION_METRICS) for r in members) if v is not None]
        clip_sets = {r.data.tags.get(TEST_CLIPS_TAG) for r in members}
        rows.append({"values": values, "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     "n": len(accs), "seeds": sorted(int(r.data.params.get("seed", 0)) for r in members),
                     "val_mean": statistics.fmean(inner) if len(inner) == len(members) else None,
                     "mixed_clips": len(clip_sets) > 1, "clip_sets": clip_sets, "members": members})
    best = max(rows, key=lambda r: r["mean"])
    for row in rows:
        row["best"] = row is best
    return rows


def inner_val_pick(rows: list[dict]) -> dict | None:
    """The cell the inner validation split picks (best mean val/acc_best), where every cell's runs have one."""
    return max(rows, key=lambda r: r["val_mean"]) if rows and all(r["val_mean"] is not None for r in rows) else None


def best_cell_summary(runs: list, keys: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """A sweep parent's figures over its complete runs, cells being the values of the varied
    `keys` (the seed and the fold apart), as its tables group them: how many cells and runs,
    the held-out accuracy mean ± std of the cell with the best held-out mean (named so: the
    paper's pick, optimistic, nothing is selected with it) and, where every run has an inner
    validation split, of the cell that split picks."""
    # Counted first: a sweep whose every cell lacks folds has fold runs with figures but no cell.
    grouped = cells(counted_runs(runs), keys)
    rows = cell_rows(grouped) if grouped else []
    metrics = {"cells": float(len(rows)), "runs": float(sum(r["n"] for r in rows))}
    if not rows:
        return metrics, {}
    picks = [("best_cell_by_test_acc", next(r for r in rows if r["best"]))]
    by_val = inner_val_pick(rows)
    if by_val is not None:
        picks.append(("best_cell_by_val_acc", by_val))
    tags = {}
    for prefix, row in picks:
        accs = [accuracy(r) for r in row["members"]]
        metrics |= {f"{prefix}/test/acc_mean": statistics.fmean(accs),
                    f"{prefix}/test/acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0}
        name = row["members"][0].info.run_name.removeprefix("pooled ")
        tags[f"mer.{prefix}"] = name.rsplit(" seed=", 1)[0]
    return metrics, tags


def protocol_note(runs, rows: list[dict]) -> str:
    run = runs[0]
    n_test = int(run.data.params.get("fold.n_test", 0) or 0)
    step = f" {n_test} held-out clips allow only steps of {100 / n_test:.2f} points." if n_test else ""
    root = run.data.params.get("data.root")
    note = (f"Data: {param(run, 'data.name') or '?'}{f' ({root})' if root else ''}; "
            f"protocol: {param(run, 'protocol.name') or '?'}, reported epoch: {run.data.tags.get('mer.selection', '?')}."
            f"{step} Each cell is the mean ± std over the runs counted; bold: the cell with the best held-out mean, "
            "picked on the held-out clips as the paper picks (optimistic).")
    if any(row["mixed_clips"] for row in rows):
        note += (f" {MIXED_CLIPS_MARK} the runs of this cell were scored on different held-out clips (some failed "
                 "preprocessing: see each run's fold.n_test_lost).")
    elif len(set().union(*(row["clip_sets"] for row in rows))) > 1:
        note += " The cells were scored on different held-out clips (see each run's fold.n_test_lost)."
    return note


def table_markdown(sweep: str, title: str, keys: list[str], rows: list[dict], note: str) -> str:
    paper = PAPER_TABLES.get(sweep)
    header = [*keys, "accuracy % (ours, mean ± std)", "runs", "seeds"] + (["paper %"] if paper else [])
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        ours = f"{row['mean']:.2f} ± {row['std']:.2f}"
        ours = f"**{ours}**" if row["best"] else ours
        ours += f" {MIXED_CLIPS_MARK}" if row["mixed_clips"] else ""
        cells_ = [*(str(v) for v in row["values"]), ours, str(row["n"]), ",".join(map(str, row["seeds"]))]
        if paper:
            figure = paper_figure(sweep, row["values"])
            cells_.append(f"{figure:.2f}" if figure is not None else "")
        lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + f"\n\n{note}\n"


def table_csv(keys: list[str], rows: list[dict], sweep: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*keys, "mean_acc", "std_acc", "runs", "seeds", "best", "paper_acc", "mixed_test_clips"])
    for row in rows:
        writer.writerow([*row["values"], f"{row['mean']:.4f}", f"{row['std']:.4f}", row["n"],
                         " ".join(map(str, row["seeds"])), row["best"], paper_figure(sweep, row["values"]),
                         row["mixed_clips"]])  # csv writes None as an empty field
    return buffer.getvalue()


def cell_name(keys: list[str], row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, row["values"]))


def table6(rows: list[dict], keys: list[str], note: str, dataset: str) -> tuple[list[tuple[str, float, bool]], str]:
    """Table VI's (method, accuracy %, is ours) entries, ours the best cell, and the text on how that cell was picked."""
    best = next(r for r in rows if r["best"])
    label = f"mer, best cell ({cell_name(keys, best)}) on {dataset}"
    entries = sorted([*((name, acc, False) for name, acc in PAPER_TABLE6.items()), (label, best["mean"], True)],
                     key=lambda entry: entry[1])
    text = (f"Our row is the grid cell with the best held-out accuracy, picked on the held-out clips as the paper "
            f"picks its cell, so it is optimistic: mean of {best['n']} runs.")
    judged = [r for r in rows if r["val_mean"] is not None]
    if judged:
        chosen = max(judged, key=lambda r: r["val_mean"])
        text += (f" Chosen on the inner validation split instead (best mean val/acc_best, {chosen['val_mean']:.2f} %), "
                 f"the cell is {cell_name(keys, chosen)}: {chosen['mean']:.2f} ± {chosen['std']:.2f} % on the held-out clips.")
    return entries, f"{text} {note} Prior figures are not re-run here and may use other protocols."


TABLE6_TITLE = "Table VI: comparison on SMIC (prior work as listed in the paper)"


def table6_markdown(entries: list[tuple[str, float, bool]], text: str) -> str:
    lines = [f"### {TABLE6_TITLE}", "", "| method | accuracy % |", "|---|---|"]
    lines += [f"| {'**' + name + '**' if ours else name} | {acc:.2f} |" for name, acc, ours in entries]
    return "\n".join(lines) + f"\n\n{text}\n"


def value_plot(sweep: str, title: str, keys: list[str], rows: list[dict]):
    figure, axes = plt.subplots(figsize=(5, 3.4))
    labels = [", ".join(map(str, r["values"])) for r in rows]
    axes.errorbar(range(len(rows)), [r["mean"] for r in rows], yerr=[r["std"] for r in rows], fmt="o-", capsize=4, label="ours")
    paper = PAPER_TABLES.get(sweep)
    if paper:
        axes.plot(range(len(rows)), [paper_figure(sweep, r["values"]) or float("nan") for r in rows], "s--", label="paper")
    axes.set_xticks(range(len(rows)), labels, rotation=30 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
    axes.set_xlabel(" / ".join(keys))
    axes.set_ylabel("accuracy %")
    axes.set_title(f"{title}\nmean ± std over seeds", fontsize=9)
    axes.legend()
    figure.tight_layout()
    return figure


# Per-epoch accuracy curves: the inner validation split where the runs have one, else the
# held-out clips, which then only monitor (nothing is selected on them).
CURVES = (("val/acc", "per-epoch inner-val accuracy %"),
          ("heldout/acc", "per-epoch held-out accuracy %\n(monitoring only, not selection)"))


def curves_plot(client: MlflowClient, title: str, keys: list[str], grouped: dict[tuple, list]):
    figure, axes = plt.subplots(figsize=(6, 3.8))
    runs = [r for members in grouped.values() for r in members]
    metric, label = next(((m, text) for m, text in CURVES if any(m in r.data.metrics for r in runs)), CURVES[0])
    for values, members in grouped.items():
        histories = [[m.value for m in sorted(client.get_metric_history(r.info.run_id, metric), key=lambda m: m.step)]
                     for r in members]
        histories = [h for h in histories if h]
        if not histories:
            continue
        # Each epoch's mean over the runs that reached it: a run stopped early shortens no other.
        length = max(len(h) for h in histories)
        mean = [100 * statistics.fmean(h[i] for h in histories if i < len(h)) for i in range(length)]
        axes.plot(range(1, length + 1), mean, marker="o", markersize=3, alpha=0.85,
                  label=", ".join(f"{k}={v}" for k, v in zip(keys, values)) or "all runs")
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"{label} (mean over seeds)", fontsize=8)
    axes.set_title(f"{title}\n{metric} per cell", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


FORMATS = ("markdown", "latex")


def sweep_cells(client: MlflowClient, experiment_name: str, sweep: str) -> tuple[list, list[str], list[str], dict, list[dict]]:
    """(the runs counted, the varied keys, what was left out and why, the runs by cell, one summary row per cell)."""
    runs = sweep_runs(client, experiment_name, sweep)
    varied = (runs[0].data.tags.get(SWEEP_VARIED_TAG) or runs[0].data.params.get("sweep.varied", "")).split(",")
    if not varied[0]:
        raise MerError(f"runs of sweep {sweep!r} do not record sweep.varied")
    # A sweep over folds (one job per subject) pools each cell's folds first: its cells are the rest.
    keys = [k for k in varied if k != "protocol.fold"]
    runs, left_out = comparable_runs(runs, keys)
    for line in left_out:
        log.warning("sweep %s: left out of the tables, %s", sweep, line)
    grouped = cells(runs, keys)
    return runs, keys, left_out, grouped, cell_rows(grouped)


# How `mer register --sweep` may pick a cell; a pick on the held-out clips needs an opt-in by name.
CELL_PICKS = ("best-by-inner-val", "best-by-test-acc")


def picked_run(client: MlflowClient, experiment_name: str, sweep: str, pick: str, allow_heldout_pick: bool = False):
    """The run whose model stands for a sweep: of the cell `pick` chooses, the run (seed)
    with the best inner validation figure (or, picking on held-out clips, held-out accuracy)."""
    if pick not in CELL_PICKS:
        raise MerError(f"--cell {pick} is unknown; choose one of {list(CELL_PICKS)}")
    if pick == "best-by-test-acc" and not allow_heldout_pick:
        raise MerError("--cell best-by-test-acc picks the model on the held-out clips, so their figures no longer "
                       "report it: pick with --cell best-by-inner-val, or opt in with --allow-heldout-pick (the "
                       "registered version is then tagged mer.picked_by=best-by-test-acc)")
    _, keys, _, _, rows = sweep_cells(client, experiment_name, sweep)
    if pick == "best-by-test-acc":
        row = next(r for r in rows if r["best"])
        run = max(row["members"], key=accuracy)
    else:
        row = inner_val_pick(rows)
        if row is None:
            raise MerError(f"the runs of sweep {sweep!r} have no inner validation split to pick by; train them with "
                           "protocol.selection=val protocol.inner_val_fraction=0.15")
        run = max(row["members"], key=lambda r: first_metric(r, SELECTION_METRICS))
    if run.data.tags.get("mer.role") == POOLED_ROLE or "pooled/test/acc" in run.data.metrics:
        raise MerError(f"the cell {cell_name(keys, row) or sweep} is pooled over folds, each with a model of its own: "
                       "register one fold's run with --run-id")
    return run


def build_sweep_report(client: MlflowClient, experiment_name: str, sweep: str, out_dir: Path | None = None,
                       parent_run_id: str | None = None, formats: tuple[str, ...] = ("markdown",)) -> dict[str, Path]:
    """Write `<sweep>.md`, `<sweep>.csv`, `<sweep>_table6.md`, two PNGs and, for runs scored
    per dataset (a composite), `<sweep>_datasets.md`; with "latex" in `formats` each table
    as `.tex` too. Into `out_dir`, and logged to `parent_run_id`, from the runs in the store alone."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise MerError(f"table format(s) {unknown} are unknown; choose from {list(FORMATS)}")
    runs, keys, left_out, grouped, rows = sweep_cells(client, experiment_name, sweep)
    names = [short_name(k) for k in keys]  # as the runs' params and names spell them
    note = protocol_note(runs, rows) + "".join(f" Left out: {line}." for line in left_out)
    title = table_title(sweep, keys, runs)
    entries, table6_text = table6(rows, names, note, param(runs[0], "data.name") or "?")
    texts = {"table": (table_markdown(sweep, title, names, rows, note), f"{sweep}.md"),
             "csv": (table_csv(names, rows, sweep), f"{sweep}.csv"),
             "table6": (table6_markdown(entries, table6_text), f"{sweep}_table6.md")}
    if "latex" in formats:
        texts["latex"] = (table_latex(sweep, title, names, rows, note, inner_val_pick(rows)), f"{sweep}.tex")
        texts["table6_latex"] = (table6_latex(entries, f"{TABLE6_TITLE}. {table6_text}", sweep), f"{sweep}_table6.tex")
    datasets, per_dataset = dataset_rows(grouped)
    if datasets:
        texts["datasets"] = (dataset_markdown(title, names, datasets, per_dataset, note), f"{sweep}_datasets.md")
        if "latex" in formats:
            texts["datasets_latex"] = (dataset_latex(title, names, datasets, per_dataset, note, sweep), f"{sweep}_datasets.tex")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out_dir) if out_dir else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for kind, (text, name) in texts.items():
            files[kind] = folder / name
            atomic_write_text(files[kind], text)
        for kind, suffix, figure in (("plot", "accuracy", value_plot(sweep, title, names, rows)),
                                     ("curves", "curves", curves_plot(client, title, names, grouped))):
            files[kind] = folder / f"{sweep}_{suffix}.png"
            figure.savefig(files[kind], dpi=110)
            plt.close(figure)
        if parent_run_id:
            for path in files.values():
                client.log_artifact(parent_run_id, str(path), "tables")
        return files if out_dir else {}
