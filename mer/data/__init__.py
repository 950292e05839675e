"""A run's data: dataset config to clip records, the clip cache, protocol folds, input scaling, augmentation and the DataModule."""
