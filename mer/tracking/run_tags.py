"""The tags `mer` sets on a run beyond MLflow's own, and what each one means: the tables,
sweep resume and `mer register` read a run's meaning from them."""

# Set, with status FINISHED, only once a run's results, predictions and artifacts are all
# logged: sweep resume and the tables count a run only when both say so.
COMPLETE_TAG = "mer.complete"
COMPLETE_FILTER = f"attributes.status = 'FINISHED' and tags.`{COMPLETE_TAG}` = 'true'"
CONFIG_HASH_TAG = "mer.config_hash"  # a run's settings (`config_hash`): the same config, run again
# A run's settings less its seed and fold: its runs over seeds (and folds) form one cell.
CELL_TAG = "mer.cell_hash"
# A run's settings less its fold: the fold runs whose predictions pool into one figure.
POOL_TAG = "mer.pool_hash"
TEST_CLIPS_TAG = "mer.test_clips"  # digest of the held-out clips a run's test figures are computed on
POOLED_ROLE = "pooled_cell"  # mer.role of the run holding one config's folds pooled
# A sweep run's settings less its sweep's varied keys, the seed and the fold (the tables' grouping).
FIXED_SETTINGS_TAG = "mer.fixed_settings_hash"
SWEEP_VARIED_TAG = "mer.sweep_varied"  # the config keys a sweep's table varies, comma-separated
# Where a run's checkpoints go; `last.ckpt` there is what resuming continues from.
CHECKPOINT_DIR_TAG = "mer.checkpoint_dir"
LAST_CHECKPOINT = "last.ckpt"
RESUMED_TAG = "mer.resumed"  # how many times the run was continued from a checkpoint
VERSIONS_TAG = "mer.versions"
