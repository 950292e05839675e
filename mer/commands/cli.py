"""`mer` command line: tools around training (which is `python train.py`). Errors in the
user's input or config are one line on stderr and exit status 1."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from mer.synthetic.generator import STILL, GeneratorSettings
from mer.synthetic.layout_writers import LAYOUTS, generate_layout
from mer.common.errors import MerError


# Layouts of long recordings: `mer generate` starts from the built-in data config's generator section.
RECORDING_LAYOUTS = ("casme_sq", "samm_lv", "casme3")
GENERATE_FLAGS = ("subjects", "clips_per_subject", "min_frames", "max_frames", "seed", "recording_frames",
                  "macro_frames", "head_turn_frames", "fps")


def _generate(args: argparse.Namespace) -> None:
    from dataclasses import asdict, replace

    base = GeneratorSettings()
    if args.layout in RECORDING_LAYOUTS:
        from mer.common.config import compose_train

        base = GeneratorSettings(**compose_train([f"data=builtin_{args.layout}"]).data.generator)
    given = {name: getattr(args, name) for name in GENERATE_FLAGS if getattr(args, name) is not None}
    settings = replace(base, **given, **(STILL if args.still else {}))
    if (settings.recording_frames or settings.head_turn_frames) and args.layout not in ("smic_e", *RECORDING_LAYOUTS):
        raise MerError(f"--recording-frames writes long recordings (layouts smic_e, {', '.join(RECORDING_LAYOUTS)}), "
                       f"not {args.layout}")
    root = generate_layout(args.layout, Path(args.root), settings)
    what = f"recordings of {settings.recording_frames} frames" if settings.recording_frames else "clips"
    print(f"wrote {settings.subjects * settings.clips_per_subject} {what} in the {args.layout} layout under {root}"
          + (f" ({', '.join(f'{k}={v}' for k, v in asdict(settings).items() if k in GENERATE_FLAGS)})"
             if settings.recording_frames else ""))


def _preview(args: argparse.Namespace) -> None:
    import matplotlib.pyplot as plt

    from mer.common.config import compose_train
    from mer.preprocess.frames import FrameSource
    from mer.preprocess.pipeline import PreprocessSettings
    from mer.preprocess.preview import preview_figure

    cfg = compose_train(args.overrides)
    settings = PreprocessSettings.from_config(cfg.preprocess)
    source = FrameSource(Path(args.clip))
    figure = preview_figure(source, settings, args.apex, args.onset)
    output = Path(args.output or f"{Path(args.clip).name}-preview.png")
    figure.savefig(output, dpi=110)
    plt.close(figure)
    print(f"wrote {output}")


def _data_summary(args: argparse.Namespace) -> None:
    from mer.common.config import compose_train
    from mer.data.index import index_dataset
    from mer.reporting.data_summary import summary_markdown

    cfg = compose_train(args.overrides)
    records, skipped = index_dataset(cfg.data)
    print(summary_markdown(records, list(cfg.data.classes), skipped, f"{cfg.data.name}: {cfg.data.root}"))


def _data_prepare(args: argparse.Namespace) -> None:
    from mer.common.config import compose_train
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
    files = build_sweep_report(client, args.experiment, args.sweep, Path(args.out), parent, ("markdown", args.format))
    for path in files.values():
        print(f"wrote {path}")
    if parent:
        print(f"logged to the sweep's parent run {parent} (tables/)")


def _register(args: argparse.Namespace) -> None:
    from mlflow.tracking import MlflowClient

    from mer.reporting.tables import picked_run
    from mer.spotting.logged_model import register

    client = MlflowClient(args.tracking_uri)
    tags = {"mer.picked_by": "run-id"}
    run_id = args.run_id
    if args.sweep:
        run_id = picked_run(client, args.experiment, args.sweep, args.cell, args.allow_heldout_pick).info.run_id
        tags = {"mer.picked_by": args.cell, "mer.sweep_name": args.sweep}
    version = register(args.tracking_uri, run_id, args.name, args.alias, tags)
    print(f"registered run {run_id}'s model as {args.name} version {version} (picked by {tags['mer.picked_by']}); "
          f"load it as models:/{args.name}@{args.alias}")


def _export(args: argparse.Namespace) -> None:
    from mer.spotting.model import export_checked, load_trained

    model = load_trained(Path(args.checkpoint))
    check = export_checked(model, Path(args.output))
    depth, size = model.settings.depth, model.settings.size
    print(f"wrote {check.path} (input 'clips' N x 1 x {depth} x {size} x {size}, output 'logits' N x {len(model.classes)}: "
          f"{', '.join(model.classes)}); ONNX and PyTorch probabilities differ by at most {check.max_abs_difference:.2e} "
          f"on {check.batch} random windows (kept in the file's metadata with the checkpoint's SHA-256)")


def _model_overrides(args: argparse.Namespace) -> list[str]:
    """The shorthand flags as the `predict` config's keys, before the explicit overrides."""
    flags = {"backend": args.backend, "fps": getattr(args, "fps", None)}
    return [f"{key}={value}" for key, value in flags.items() if value is not None] + list(args.overrides)


def _trained_model(args: argparse.Namespace, cfg, run_id: str | None = None):
    from mer.spotting.model import load_trained

    tracking_uri = args.tracking_uri or cfg.logger.tracking_uri
    if getattr(args, "model", None):
        from mer.spotting.logged_model import checkpoint_from_model_uri

        checkpoint, _ = checkpoint_from_model_uri(args.model, tracking_uri, Path(tempfile.mkdtemp(prefix="mer-model-")))
        return load_trained(checkpoint, tracking_uri=tracking_uri)
    return load_trained(Path(args.checkpoint) if args.checkpoint else None, run_id or args.run_id, tracking_uri)


def _truth(text: str):
    from mer.spotting.predict import TruthInterval

    span, _, label = text.partition(":")
    try:
        onset, offset = (int(v) for v in span.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ONSET-OFFSET[:label] (frame indices from 0)") from None
    return TruthInterval(onset, offset, label)


def _predict(args: argparse.Namespace) -> None:
    from mer.common.config import compose_config
    from mer.spotting.predict import predictor, summary_line, write_prediction

    cfg = compose_config("predict", _model_overrides(args))
    source = Path(args.input)
    prediction = predictor(cfg, _trained_model(args, cfg))(source)
    files = write_prediction(prediction, Path(args.output or Path(cfg.paths.output_dir) / source.stem), source.stem, args.truth)
    if prediction.message:
        print(f"warning: {prediction.message}", file=sys.stderr)
    print(summary_line(prediction, files))


def _spot_eval(args: argparse.Namespace) -> None:
    from mer.common.config import compose_config
    from mer.spotting.evaluation import spot_eval

    cfg = compose_config("predict", _model_overrides(args))
    models = [_trained_model(args, cfg, run_id) for run_id in args.run_id] if args.run_id else [_trained_model(args, cfg)]
    result = spot_eval(cfg, models, args.overrides, args.allow_seen_subjects)
    print(result.report())


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

    from mlflow.tracking import MlflowClient

    from mer.tracking.saved_view import SHARE_KEY, save_comparison_view
    from mer.tracking.store import ensure_store

    experiment_id = ensure_store(args.tracking_uri, args.experiment, args.artifact_location)
    base = f"http://127.0.0.1:{args.port}/#/experiments/{experiment_id}"
    view = {"workflowType": "machine_learning"}
    saved = save_comparison_view(MlflowClient(args.tracking_uri), experiment_id)
    print(f"runs table: {base}/runs?{urlencode({**view, SHARE_KEY: saved} if saved else view)}")
    if not saved:
        print("(the store refused the saved comparison view, an experiment tag: the table opens with MLflow's defaults)")
    print(f"models:     {base}/models?{urlencode(view)}")
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


def _add_generate(commands) -> None:
    generate = commands.add_parser("generate", help="write the built-in dataset (real faces; SMIC-HS layout, or another)")
    generate.add_argument("root", help="folder to create (must be new or empty)")
    defaults = GeneratorSettings()
    for flag, kind in (("subjects", int), ("clips-per-subject", int), ("min-frames", int), ("max-frames", int),
                       ("seed", int)):
        generate.add_argument(f"--{flag}", type=kind, default=None,
                              help=f"default {getattr(defaults, flag.replace('-', '_'))}, or the built-in data "
                                   "config's for a recording layout")
    generate.add_argument("--layout", choices=LAYOUTS, default="smic_hs", help="the dataset layout to write")
    generate.add_argument("--recording-frames", type=int, default=None,
                          help="each video a recording of this many frames with its micro-expression inside (smic_e; "
                               f"{', '.join(RECORDING_LAYOUTS)} default to their built-in data config's)")
    generate.add_argument("--macro-frames", type=int, default=None, help="recordings: an annotated macro-expression "
                                                                         "of this many frames")
    generate.add_argument("--head-turn-frames", type=int, default=None, help="recordings: an unannotated head turn "
                                                                             "of this many frames")
    generate.add_argument("--fps", type=float, default=None, help="the recordings' frame rate (sway and blink timing)")
    generate.add_argument("--still", action="store_true", help="no head sway, light drift or blinks, every clip alike: "
                                                                "the expression is the only motion")
    generate.set_defaults(handler=_generate)


def _add_preview(commands) -> None:
    preview = commands.add_parser("preview", help="draw one clip through every preprocessing stage (PNG)")
    preview.add_argument("clip", help="a clip's frame folder or video file")
    preview.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preprocess=face_only preprocess.margin=0.3")
    preview.add_argument("-o", "--output", help="PNG to write (default: <clip>-preview.png)")
    preview.add_argument("--apex", type=int, help="apex frame index (default: the clip centre)")
    preview.add_argument("--onset", type=int, help="onset (reference) frame index (default: the first frame of the window)")
    preview.set_defaults(handler=_preview)


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    summary = data_commands.add_parser("summary", help="clips per class and subject, and the rows/folders skipped")
    summary.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=casme2 data.root=/data/CASME2")
    summary.set_defaults(handler=_data_summary)
    prepare = data_commands.add_parser("prepare", help="preprocess a dataset into the cache and make its folds, once, "
                                                       "before the jobs of a sweep that all need them")
    prepare.add_argument("overrides", nargs="*", help="the sweep's Hydra overrides, e.g. data=smic_hs data.root=/data/SMIC")
    prepare.set_defaults(handler=_data_prepare)


def _add_tables(commands) -> None:
    tables = commands.add_parser("tables", help="rebuild a sweep's tables and plots from the MLflow store")
    tables.add_argument("--sweep", required=True, help="sweep name, e.g. table3_lr")
    tables.add_argument("--out", default="outputs/tables", help="folder for the Markdown, CSV and PNG files")
    tables.add_argument("--format", choices=("markdown", "latex"), default="markdown",
                        help="latex: each table as a booktabs .tex file too, for a paper")
    store_arguments(tables)
    tables.set_defaults(handler=_tables)


def _add_register(commands) -> None:
    registry = commands.add_parser("register", help="register a training run's MLflow model in the Model Registry "
                                                    "and point an alias at it")
    which = registry.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="a training run (one fold's, for a multi-fold protocol)")
    which.add_argument("--sweep", help="a sweep: the model of the cell --cell picks (its seed with the best inner-val figure)")
    registry.add_argument("--cell", default="best-by-inner-val",
                          help="how a sweep's cell is picked: best-by-inner-val, or best-by-test-acc, which picks on "
                               "held-out clips and needs --allow-heldout-pick")
    registry.add_argument("--allow-heldout-pick", action="store_true",
                          help="opt in to --cell best-by-test-acc (the version is tagged mer.picked_by so)")
    registry.add_argument("--name", default="mer", help="the registered model's name")
    registry.add_argument("--alias", default="candidate", help="the alias set on the new version")
    store_arguments(registry)
    registry.set_defaults(handler=_register)


def _add_export(commands) -> None:
    export = commands.add_parser("export", help="write a train.py checkpoint's network as ONNX (dynamic batch)")
    export.add_argument("checkpoint", help="a .ckpt written by train.py (see the run's checkpoints/ artifacts)")
    export.add_argument("output", help="the .onnx file to write")
    export.set_defaults(handler=_export)


def _add_predict_and_spot_eval(commands) -> None:
    for name, help_text in (("predict", "run a trained model over a long video or frame folder: per-window class "
                                        "probabilities, spotted intervals, CSV, JSON and a timeline PNG"),
                            ("spot-eval", "spot and recognise micro-expressions over a long-video dataset (default: the "
                                          "built-in SMIC-E recordings); MEGC metrics logged to MLflow")):
        command = commands.add_parser(name, help=help_text)
        if name == "predict":
            command.add_argument("input", help="a video file (mp4, avi, ...) or a folder of numbered frames")
        model = command.add_mutually_exclusive_group(required=True)
        if name == "predict":
            model.add_argument("--run-id", help="an MLflow run of train.py (its logged checkpoint)")
        else:
            model.add_argument("--run-id", action="append", help="an MLflow run of train.py (its logged checkpoint); "
                                                                 "repeat it for the runs of a LOSO sweep on this tree")
        model.add_argument("--checkpoint", help="a .ckpt written by train.py")
        if name == "predict":
            model.add_argument("--model", help="a registered or logged MLflow model: models:/NAME@ALIAS, "
                                               "models:/NAME/VERSION or models:/MODEL_ID")
        command.add_argument("--tracking-uri", help="the store --run-id is in (default: logger.tracking_uri)")
        command.add_argument("--backend", choices=["torch", "onnx"], help="shorthand for backend=...")
        if name == "predict":
            command.add_argument("--fps", type=float, help="frame folders: frames per second (a video's own rate wins)")
            command.add_argument("-o", "--output", help="folder for the files (default: paths.output_dir/<input name>)")
            command.add_argument("--truth", action="append", type=_truth, default=[], metavar="ONSET-OFFSET[:LABEL]",
                                 help="an annotated interval to draw on the timeline (repeatable)")
        else:
            command.add_argument("--allow-seen-subjects", action="store_true",
                                 help="also score recordings of subjects the model trained on (in any dataset of the "
                                      "corpus family); the run is tagged and its report says so")
        command.add_argument("overrides", nargs="*", help="Hydra overrides of conf/predict.yaml, e.g. window.stride=2 "
                                                          "spotting.threshold=4 faces.redetect=every")
        command.set_defaults(handler=_predict if name == "predict" else _spot_eval)


def _add_runs(commands) -> None:
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


def _add_ui(commands) -> None:
    ui = commands.add_parser("ui", help="open the MLflow UI on the store, printing the runs table's address")
    store_arguments(ui)
    ui.add_argument("--artifact-location", default="outputs/mlartifacts", help="for an experiment not created yet")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--dry-run", action="store_true", help="print the addresses and the server command, start nothing")
    ui.set_defaults(handler=_ui)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_generate, _add_preview, _add_data, _add_tables, _add_register, _add_export, _add_predict_and_spot_eval, _add_runs, _add_ui):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Hydra overrides after the options (`mer predict v.mp4 --checkpoint c.ckpt window.stride=2`)
    # are left over by argparse, which ends a positional list at the first option.
    if extra and (not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
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
