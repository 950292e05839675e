"""The commands: the `mer` tool, the Hydra entry points, training and evaluation runs and
the sweep callbacks, which orchestrate the pipeline packages below them."""
