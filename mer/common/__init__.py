"""The shared ground every layer stands on: configs and paths, errors, atomic files,
signals, ranks, metrics, what may choose a model, and the checks on typed values."""
