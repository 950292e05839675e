"""Evaluate a checkpoint or an MLflow run: `python evaluate.py run_id=<id>` or `ckpt_path=<file>`."""

from mer.commands.entrypoints import evaluate_main

if __name__ == "__main__":
    evaluate_main()
