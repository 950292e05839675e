"""Protocols over the datasets of a composite (leave one dataset out, cross-dataset) and
the MEGC composite as one command, on the built-in composite in its three layouts."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import f1_score, recall_score

from mer.data.splits import ProtocolSettings, make_folds
from mer.datasets.records import ClipRecord
from mer.common.errors import MerError
from mer.reporting.folds import read_predictions_csv

from conftest import base_overrides, run_script
from mer.commands.cli import main as mer_main
from helpers import runs_of

# Hand-made records: two subjects per dataset, two clips each.
RECORDS = [ClipRecord(f"{d}_{s}_{i}", f"{d}_{s}", label, Path("."), source=d)
           for d in ("casme2", "samm", "smic") for s in ("a", "b") for i, label in enumerate(("negative", "positive"))]


def ids(dataset: str) -> list[str]:
    return sorted(r.clip_id for r in RECORDS if r.source == dataset)


def test_lodo_holds_each_dataset_out_once_and_validates_on_other_subjects():
    folds = make_folds(RECORDS, ProtocolSettings(name="lodo", inner_val_fraction=0.25))
    assert [f["name"] for f in folds] == ["dataset=casme2", "dataset=samm", "dataset=smic"]
    for fold, held in zip(folds, ("casme2", "samm", "smic")):
        assert fold["test"] == ids(held)
        assert sorted(fold["train"] + fold["val"]) == sorted(i for d in {"casme2", "samm", "smic"} - {held} for i in ids(d))
        # the inner split takes whole subjects: no subject on both sides
        subject = {r.clip_id: r.subject for r in RECORDS}
        assert fold["val"] and not {subject[i] for i in fold["val"]} & {subject[i] for i in fold["train"]}


def test_cross_trains_on_one_dataset_and_tests_on_another_or_the_rest():
    (fold,) = make_folds(RECORDS, ProtocolSettings(name="cross", train="casme2", test="samm"))
    assert (fold["name"], fold["train"], fold["test"]) == ("train=casme2 test=samm", ids("casme2"), ids("samm"))
    (fold,) = make_folds(RECORDS, ProtocolSettings(name="cross", train="casme2"))
    assert (fold["name"], fold["test"]) == ("train=casme2 test=samm+smic", ids("samm") + ids("smic"))
    (fold,) = make_folds(RECORDS, ProtocolSettings(name="cross", test="smic"))
    assert fold["train"] == ids("casme2") + ids("samm")


def test_dataset_protocols_refuse_what_they_cannot_split():
    with pytest.raises(MerError, match="several datasets"):
        make_folds([r for r in RECORDS if r.source == "samm"], ProtocolSettings(name="lodo"))
    with pytest.raises(MerError, match=r"protocol.test=casme3 is not a dataset of these clips; choose one of \['casme2'"):
        make_folds(RECORDS, ProtocolSettings(name="cross", train="casme2", test="casme3"))
    with pytest.raises(MerError, match="two datasets"):
        ProtocolSettings(name="cross", train="samm", test="samm")
    with pytest.raises(MerError, match="for protocol=cross, not protocol=loso"):
        ProtocolSettings(name="loso", test="samm")


@pytest.fixture(scope="module")
def composite_root(tmp_path_factory) -> Path:
    """Where the first command writes the built-in composite, for the others to reuse."""
    return tmp_path_factory.mktemp("composite") / "megc"


def train_on_composite(tmp_path: Path, composite_root: Path, shared_dirs, *overrides: str) -> tuple[Path, list]:
    """`train.py -m <overrides>` on the built-in composite, in a store of its own: (the store, its runs)."""
    store = tmp_path / "mlflow.db"
    result = run_script("train.py", "-m", *overrides, *base_overrides(tmp_path, composite_root, shared_dirs),
                        f"logger.tracking_uri=sqlite:///{store}")
    assert result.returncode == 0, result.stderr[-3000:]
    return store, runs_of(store)


def predictions(store: Path, run) -> list[dict]:
    client = MlflowClient(f"sqlite:///{store}")
    name = "report/predictions.csv" if "pooled/test/acc" in run.data.metrics else "predictions.csv"
    return read_predictions_csv(Path(client.download_artifacts(run.info.run_id, name)).read_text())


def megc_scores(rows: list[dict]) -> dict[str, float]:
    """UF1 and UAR as MEGC defines them (macro F1, macro recall), by scikit-learn."""
    truth, guess = [r["label"] for r in rows], [r["predicted"] for r in rows]
    return {"uf1": f1_score(truth, guess, average="macro"), "uar": recall_score(truth, guess, average="macro")}


def check_pooled(store: Path, run, n_clips: int) -> None:
    """Each held-out clip once, and the pooled and per-dataset UF1/UAR as scikit-learn computes them."""
    rows = predictions(store, run)
    assert len(rows) == len({r["clip_id"] for r in rows}) == n_clips
    for dataset in ("smic", "casme2", "samm"):
        part = [r for r in rows if r["dataset"] == dataset]
        assert len(part) == n_clips // 3
        for name, value in megc_scores(part).items():
            assert run.data.metrics[f"pooled/test/{dataset}/{name}"] == pytest.approx(value, abs=1e-4)
    for name, value in megc_scores(rows).items():
        assert run.data.metrics[f"pooled/test/{name}"] == pytest.approx(value, abs=1e-4)


def test_lodo_multirun_scores_three_folds_pooled_and_per_dataset(tmp_path, composite_root, shared_dirs):
    store, runs = train_on_composite(tmp_path, composite_root, shared_dirs, "protocol=lodo", "data=builtin_composite",
                                     "trainer.max_epochs=2")
    folds = [r for r in runs if "mer.fold" in r.data.tags]
    assert sorted(r.data.tags["mer.fold"] for r in folds) == ["dataset=casme2", "dataset=samm", "dataset=smic"]
    assert all(r.info.status == "FINISHED" for r in runs)
    (job,) = [r for r in runs if "pooled/test/uf1" in r.data.metrics]
    assert {r.data.tags["mlflow.parentRunId"] for r in folds} == {job.info.run_id}
    check_pooled(store, job, 72)


def test_megc_composite_one_job_per_subject_pooled_and_its_table(tmp_path, composite_root, shared_dirs):
    store, runs = train_on_composite(tmp_path, composite_root, shared_dirs, "experiment=megc_composite",
                                     "trainer.max_epochs=1", "hydra/launcher=parallel")
    folds = [r for r in runs if "mer.fold" in r.data.tags]
    # nine subjects (three per dataset), each a job of its own, each FINISHED
    assert len(folds) == 9 and len({r.data.params["protocol.fold"] for r in folds}) == 9
    unfinished = [(r.info.run_name, r.info.status, r.data.tags.get("mer.error")) for r in runs if r.info.status != "FINISHED"]
    assert not unfinished, unfinished
    (pooled,) = [r for r in runs if r.data.tags.get("mer.role") == "pooled_cell"]
    check_pooled(store, pooled, 72)
    out = tmp_path / "tables"
    mer_main(["tables", "--sweep", "megc_composite", "--tracking-uri", f"sqlite:///{store}", "--out", str(out),
              "--format", "latex"])
    table = (out / "megc_composite_datasets.md").read_text()
    header, _, row = table.split("\n\n")[1].splitlines()
    assert header.startswith("| SMIC UF1 % | SMIC UAR % | CASME II UF1 % | CASME II UAR % | SAMM UF1 % | SAMM UAR % | "
                             "Overall UF1 % | Overall UAR % | runs |")
    expected = [100 * pooled.data.metrics[f"pooled/test/{part}"]
                for part in ("smic/uf1", "smic/uar", "casme2/uf1", "casme2/uar", "samm/uf1", "samm/uar", "uf1", "uar")]
    assert row == "| " + " | ".join(f"{v:.2f} ± 0.00" for v in expected) + " | 1 |"
    latex = (out / "megc_composite_datasets.tex").read_text()
    assert r"\multicolumn{2}{c}{SMIC} & \multicolumn{2}{c}{CASME II} & \multicolumn{2}{c}{SAMM} & \multicolumn{2}{c}{Overall}" in latex
    assert r"\toprule" in latex and r"\bottomrule" in latex


def test_cross_dataset_sweep_table_has_a_row_per_training_corpus_and_columns_per_test_corpus(tmp_path, composite_root,
                                                                                           shared_dirs):
    store, stored = train_on_composite(tmp_path, composite_root, shared_dirs, "+sweeps=cross_dataset", "trainer.max_epochs=1")
    runs = {r.data.params["protocol.train"]: r for r in stored if r.data.tags.get("mer.role") != "sweep_parent"}
    assert sorted(runs) == ["casme2", "samm", "smic"]
    for train, run in runs.items():
        rows = predictions(store, run)
        # tested on the two other corpora, each clip once, none of the training corpus
        assert sorted({r["dataset"] for r in rows}) == sorted({"casme2", "samm", "smic"} - {train})
        assert len(rows) == len({r["clip_id"] for r in rows}) == 48
        for dataset in {"casme2", "samm", "smic"} - {train}:
            part = [r for r in rows if r["dataset"] == dataset]
            assert run.data.metrics[f"test/{dataset}/uf1"] == pytest.approx(megc_scores(part)["uf1"], abs=1e-4)
    out = tmp_path / "tables"
    mer_main(["tables", "--sweep", "cross_dataset", "--tracking-uri", f"sqlite:///{store}", "--out", str(out)])
    lines = (out / "cross_dataset_datasets.md").read_text().split("\n\n")[1].splitlines()
    assert lines[0].startswith("| protocol.train | SMIC UF1 % | SMIC UAR % | CASME II UF1 % |")
    body = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}
    assert sorted(body) == ["casme2", "samm", "smic"]
    # the training corpus's own columns are empty: it is never tested on itself
    smic_uf1, casme2_uf1 = body["casme2"][0], body["casme2"][2]
    assert casme2_uf1 == "" and smic_uf1 == f"{100 * runs['casme2'].data.metrics['test/smic/uf1']:.2f} ± 0.00"
