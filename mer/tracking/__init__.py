"""MLflow behind one small module: store setup, run names, tags, failure status."""
