"""evaluate.py's view of a training config: this machine's folders, keys older runs lack."""

from omegaconf import OmegaConf

from mer.tracking.reproduce import localise


def test_a_checkpoint_config_gets_this_commands_paths_and_keys_added_since():
    trained = OmegaConf.create({"paths": {"data_dir": "/old/machine/data", "cache_dir": "/old/machine/data/cache"},
                                "data": {"root": "/old/machine/data/builtin_smic", "classes": ["a", "b"], "batch_size": 16,
                                         "num_workers": 0},
                                "protocol": {"name": "holdout"}, "augment": {"transforms": []}, "seed": 3})
    here = OmegaConf.create({"data_root": None, "paths": {"data_dir": "/here/data", "cache_dir": "/here/data/cache"}})
    cfg = localise(trained, here)
    assert cfg.data.root == "/here/data/builtin_smic" and cfg.paths.cache_dir == "/here/data/cache"
    assert cfg.data.input_scaling == "unit" and cfg.protocol.monitor_heldout is True
    # a checkpoint from before the datamodule was built from config gets today's entry, on its own values
    assert (cfg.datamodule.batch_size, cfg.datamodule.scaling, cfg.datamodule.augment.seed) == (16, "unit", 3)
    assert trained.paths.data_dir == "/old/machine/data", "the checkpoint's own config is left as it was"
    # data outside the training machine's data folder stays where it was, unless data_root says otherwise
    elsewhere = OmegaConf.merge(trained, {"data": {"root": "/datasets/SMIC", "input_scaling": "mean_max"}})
    assert localise(elsewhere, here).data.root == "/datasets/SMIC"
    assert localise(elsewhere, here).data.input_scaling == "mean_max"
    assert localise(elsewhere, OmegaConf.merge(here, {"data_root": "/mnt/SMIC"})).data.root == "/mnt/SMIC"
