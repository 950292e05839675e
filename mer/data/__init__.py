"""Datasets: clip records, layout indexers, the built-in generator, splits, cache, DataModule."""
