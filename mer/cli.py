"""`mer` command line: tools around training (which is `python train.py`). Errors in the
user's input or config are one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mer.synthetic.generator import GeneratorSettings
from mer.synthetic.layout_writers import generate_smic_hs
from mer.errors import MerError


def _generate(args: argparse.Namespace) -> None:
    settings = GeneratorSettings(subjects=args.subjects, clips_per_subject=args.clips_per_subject,
                                 min_frames=args.min_frames, max_frames=args.max_frames, seed=args.seed)
    root = generate_smic_hs(Path(args.root), settings)
    print(f"wrote {settings.subjects * settings.clips_per_subject} clips in the SMIC-HS layout under {root}")


def _preview(args: argparse.Namespace) -> None:
    import matplotlib.pyplot as plt

    from mer.config import compose_train
    from mer.preprocess.frames import FrameSource
    from mer.preprocess.pipeline import PreprocessSettings
    from mer.preprocess.preview import preview_figure

    cfg = compose_train(args.overrides)
    settings = PreprocessSettings(**cfg.preprocess)
    source = FrameSource(Path(args.clip))
    figure = preview_figure(source, settings, args.apex, args.onset)
    output = Path(args.output or f"{Path(args.clip).name}-preview.png")
    figure.savefig(output, dpi=110)
    plt.close(figure)
    print(f"wrote {output}")


def _data_summary(args: argparse.Namespace) -> None:
    from mer.config import compose_train
    from mer.data.index import index_dataset
    from mer.reporting.data_summary import summary_markdown

    cfg = compose_train(args.overrides)
    records, skipped = index_dataset(cfg.data)
    print(summary_markdown(records, list(cfg.data.classes), skipped, f"{cfg.data.name}: {cfg.data.root}"))


def _data_prepare(args: argparse.Namespace) -> None:
    from mer.config import compose_train
    from mer.data.prepare import prepare_data

    cfg = compose_train(args.overrides)
    data = prepare_data(cfg)
    report = data.report
    print(f"{len(report.ok)} clips cached in {data.cache.dir} ({report.preprocessed} preprocessed now, "
          f"{len(report.failed)} failed); folds in {data.folds_path}")


def _tables(args: argparse.Namespace) -> None:
    from mlflow.tracking import MlflowClient

    from mer.reporting.tables import build_sweep_report, latest_parent

    client = MlflowClient(args.tracking_uri)
    parent = latest_parent(client, args.experiment, args.sweep)
    files = build_sweep_report(client, args.experiment, args.sweep, Path(args.out), parent)
    for path in files.values():
        print(f"wrote {path}")
    if parent:
        print(f"logged to the sweep's parent run {parent} (tables/)")


def _export(args: argparse.Namespace) -> None:
    from mer.evaluation import load_checkpoint
    from mer.models.export import export_onnx

    module, run_cfg = load_checkpoint(Path(args.checkpoint))
    out = export_onnx(module.net, Path(args.output), run_cfg.preprocess.depth, run_cfg.preprocess.size)
    print(f"wrote {out} (input 'clips' N x 1 x {run_cfg.preprocess.depth} x {run_cfg.preprocess.size}"
          f" x {run_cfg.preprocess.size}, output 'logits' N x {len(run_cfg.data.classes)}: {', '.join(run_cfg.data.classes)})")


def _runs_cleanup(args: argparse.Namespace) -> None:
    from mlflow.tracking import MlflowClient

    from mer.tracking.stale_runs import HOST_TAG, PID_TAG, close_stale_runs, undecidable_runs

    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise MerError(f"no experiment {args.experiment!r} in {args.tracking_uri}")
    closed = close_stale_runs(client, [experiment.experiment_id])
    print(f"closed {len(closed)} run(s) left RUNNING by a process that is gone" + "".join(f"\n  {r}" for r in closed))
    others = undecidable_runs(client, [experiment.experiment_id])
    if others:
        print(f"{len(others)} RUNNING run(s) of other hosts, outside SLURM, cannot be checked from here; run "
              "`mer runs cleanup` on their host:" + "".join(f"\n  {r.info.run_id} {r.info.run_name!r} on "
                                                            f"{r.data.tags[HOST_TAG]} (pid {r.data.tags.get(PID_TAG)})"
                                                            for r in others))


def _runs_upload(args: argparse.Namespace) -> None:
    import logging
    import os

    from mer.tracking.offline import upload_runs

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    uploaded = upload_runs(args.source, args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), args.run_id,
                           args.experiment)
    print(f"uploaded {len(uploaded)} run(s) from {args.source}" + "".join(
        f"\n  {u.local_id} -> {u.server_id}" + (" (continued)" if u.continued else " (new run)") for u in uploaded))


def _ui(args: argparse.Namespace) -> None:
    import os
    from urllib.parse import urlencode

    from mer.tracking.store import ensure_store

    experiment_id = ensure_store(args.tracking_uri, args.experiment, args.artifact_location)
    base = f"http://127.0.0.1:{args.port}/#/experiments/{experiment_id}/runs"
    view = {"workflowType": "machine_learning"}
    print(f"runs table: {base}?{urlencode(view)}")
    sweep_filter = {**view, "searchFilter": "tags.`mer.sweep_name` = 'table3_lr'"}
    print(f"one sweep:  {base}?{urlencode(sweep_filter)}")
    command = ["mlflow", "ui", "--backend-store-uri", args.tracking_uri, "--host", "127.0.0.1", "--port", str(args.port)]
    if args.dry_run:
        print(" ".join(command))
        return
    os.execvp(command[0], command)


def one_line(error: BaseException) -> str:
    """Hydra's and OmegaConf's messages span lines (the key, the object type, a hint about
    HYDRA_FULL_ERROR); the user needs them on one."""
    text = str(error).split("Config search path", 1)[0]  # where Hydra looked: noise to the user
    lines = [line.strip() for line in text.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
    return " ".join(lines) or type(error).__name__


def store_arguments(parser: argparse.ArgumentParser) -> None:
    """The store and experiment a command reads, defaulting to train.py's."""
    parser.add_argument("--tracking-uri", default="sqlite:///outputs/mlflow.db")
    parser.add_argument("--experiment", default="mer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write the built-in dataset (real faces, SMIC-HS layout)")
    generate.add_argument("root", help="folder to create (must be new or empty)")
    defaults = GeneratorSettings()
    generate.add_argument("--subjects", type=int, default=defaults.subjects)
    generate.add_argument("--clips-per-subject", type=int, default=defaults.clips_per_subject)
    generate.add_argument("--min-frames", type=int, default=defaults.min_frames)
    generate.add_argument("--max-frames", type=int, default=defaults.max_frames)
    generate.add_argument("--seed", type=int, default=defaults.seed)
    generate.set_defaults(handler=_generate)
    preview = commands.add_parser("preview", help="draw one clip through every preprocessing stage (PNG)")
    preview.add_argument("clip", help="a clip's frame folder or video file")
    preview.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preprocess=face_only preprocess.margin=0.3")
    preview.add_argument("-o", "--output", help="PNG to write (default: <clip>-preview.png)")
    preview.add_argument("--apex", type=int, help="apex frame index (default: the clip centre)")
    preview.add_argument("--onset", type=int, help="onset (reference) frame index (default: the first frame of the window)")
    preview.set_defaults(handler=_preview)
    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    summary = data_commands.add_parser("summary", help="clips per class and subject, and the rows/folders skipped")
    summary.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=casme2 data.root=/data/CASME2")
    summary.set_defaults(handler=_data_summary)
    prepare = data_commands.add_parser("prepare", help="preprocess a dataset into the cache and make its folds, once, "
                                                       "before the jobs of a sweep that all need them")
    prepare.add_argument("overrides", nargs="*", help="the sweep's Hydra overrides, e.g. data=smic_hs data.root=/data/SMIC")
    prepare.set_defaults(handler=_data_prepare)
    tables = commands.add_parser("tables", help="rebuild a sweep's tables and plots from the MLflow store")
    tables.add_argument("--sweep", required=True, help="sweep name, e.g. table3_lr")
    tables.add_argument("--out", default="outputs/tables", help="folder for the Markdown, CSV and PNG files")
    store_arguments(tables)
    tables.set_defaults(handler=_tables)
    export = commands.add_parser("export", help="write a train.py checkpoint's network as ONNX (dynamic batch)")
    export.add_argument("checkpoint", help="a .ckpt written by train.py (see the run's checkpoints/ artifacts)")
    export.add_argument("output", help="the .onnx file to write")
    export.set_defaults(handler=_export)
    runs = commands.add_parser("runs", help="tracking-store upkeep")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    cleanup = runs_commands.add_parser("cleanup", help="close FAILED the runs left RUNNING by a process that is gone "
                                                       "(kill -9, out of memory); runs of other hosts are left alone")
    store_arguments(cleanup)
    cleanup.set_defaults(handler=_runs_cleanup)
    upload = runs_commands.add_parser("upload", help="put runs that went on in a local store while their tracking server "
                                                     "was down on that server, continuing the runs it has")
    upload.add_argument("--from", dest="source", required=True, metavar="URI",
                        help="the local store, e.g. sqlite:///outputs/mlflow-offline.db (logger.offline_uri)")
    upload.add_argument("--run-id", action="append", default=[], help="only this local run (repeatable; default: "
                                                                      "every run not uploaded yet)")
    # Not store_arguments: the store written here is a server, and no experiment is assumed.
    upload.add_argument("--tracking-uri", help="the server (default: MLFLOW_TRACKING_URI, else the one each run was "
                                               "recorded against)")
    upload.add_argument("--experiment", help="only runs of this experiment (default: all)")
    upload.set_defaults(handler=_runs_upload)
    ui = commands.add_parser("ui", help="open the MLflow UI on the store, printing the runs table's address")
    store_arguments(ui)
    ui.add_argument("--artifact-location", default="outputs/mlartifacts", help="for an experiment not created yet")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--dry-run", action="store_true", help="print the addresses and the server command, start nothing")
    ui.set_defaults(handler=_ui)
    args = parser.parse_args(argv)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        args.handler(args)
    except (MerError, HydraException, OmegaConfBaseException) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
