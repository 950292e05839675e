"""Figures computed on the clips they claim: one split per dataset whatever the
preprocessing, held-out clips lost to preprocessing named, validation subjects unseen
where test subjects are, tables that mark cells scored on other clips."""

import shutil

import pytest
from mlflow.tracking import MlflowClient

from mer.data.prepare import prepare_data
from mer.data.splits import ProtocolSettings, make_folds
from mer.datasets.smic_hs import index_smic_hs
from mer.common.errors import MerError
from mer.reporting.tables import build_sweep_report
from mer.commands.train import train


def test_every_preprocessing_shares_one_split_and_a_lost_held_out_clip_is_named(tmp_path, make_cfg, tiny_tree):
    clean = prepare_data(make_cfg(), progress=False)
    ablation = prepare_data(make_cfg("preprocess=face_only"), progress=False)
    assert ablation.folds_path == clean.folds_path

    # A held-out clip whose frames cannot be read: the split stays the one made from the
    # indexed clips (before, it was made again without the clip, so other clips moved).
    tree = tmp_path / "tree"
    shutil.copytree(tiny_tree, tree)
    held = clean.folds["folds"][0]["test"][0]
    (broken,) = [r for r in index_smic_hs(tree)[0] if r.clip_id == held]
    for frame in broken.frames:
        frame.write_bytes(b"")
    cfg = make_cfg(f"data.root={tree}", "logger.run_name=lost-clip-check", "trainer.max_epochs=1")
    damaged = prepare_data(cfg, progress=False)
    assert damaged.folds_path.name == clean.folds_path.name
    (fold,) = damaged.selected_folds()
    assert fold["test_lost"] == [held]
    assert fold["test"] == [i for i in clean.folds["folds"][0]["test"] if i != held]

    train(cfg, [])
    client = MlflowClient(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id
    (run,) = client.search_runs([experiment], "attributes.run_name = 'lost-clip-check'")
    assert run.data.params["fold.n_test_lost"] == "1"
    assert run.data.params["fold.n_test"] == str(len(clean.folds["folds"][0]["test"]) - 1)
    assert held in run.data.tags["mlflow.note.content"]


@pytest.mark.parametrize("protocol", [{"name": "loso"}, {"name": "holdout", "subject_disjoint": True}])
def test_the_inner_validation_split_holds_whole_subjects_out_where_the_test_part_does(tiny_tree, protocol):
    records = index_smic_hs(tiny_tree)[0]
    subject = {r.clip_id: r.subject for r in records}
    folds = make_folds(records, ProtocolSettings(**protocol, inner_val_fraction=0.2))
    for fold in folds:
        train, val, test = ({subject[i] for i in fold[part]} for part in ("train", "val", "test"))
        assert val and not val & train, f"{fold['name']}: validation subjects {val & train} also train"
        assert not test & (train | val)


def test_subject_disjoint_is_refused_where_it_cannot_apply():
    with pytest.raises(MerError, match="subject_disjoint=true cannot apply to protocol=kfold"):
        ProtocolSettings(name="kfold", subject_disjoint=True)


def test_a_table_marks_a_cell_whose_runs_were_scored_on_other_clips(tmp_path):
    """Runs written straight into a real store: two seeds of one cell scored on different
    held-out clips (one lost a clip to preprocessing), and a cell scored on the same ones."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("mer", artifact_location=(tmp_path / "artifacts").as_uri())
    for lr, seed, clips, acc in (("0.01", 1, "aaa", 0.5), ("0.01", 2, "bbb", 0.6), ("0.001", 1, "aaa", 0.7),
                                 ("0.001", 2, "aaa", 0.8)):
        run = client.create_run(experiment, tags={"mer.sweep_name": "table3_lr", "mer.sweep_varied": "optim.lr",
                                                  "mer.fixed_settings_hash": "same", "mer.config_hash": f"{lr}-{seed}",
                                                  "mer.complete": "true", "mer.test_clips": clips,
                                                  "mer.selection": "last_epoch"})
        for key, value in (("lr", lr), ("seed", seed), ("data.name", "builtin"), ("data.root", "data/builtin_smic"),
                           ("fold.n_test", 15)):
            client.log_param(run.info.run_id, key, value)
        client.log_metric(run.info.run_id, "test/acc", acc)
        client.set_terminated(run.info.run_id, "FINISHED")
    files = build_sweep_report(client, "mer", "table3_lr", out_dir=tmp_path / "tables")
    table = files["table"].read_text()
    assert "| 0.01 | 55.00 ± 7.07 ‡ |" in table
    assert "| 0.001 | **75.00 ± 7.07** |" in table
    assert "‡ the runs of this cell were scored on different held-out clips" in table
    assert "Data: builtin (data/builtin_smic)" in table and str(tmp_path) not in table
