"""`mer` command line: tools around training (which is `python train.py`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mer.data.generator import GeneratorSettings, generate_smic_hs
from mer.errors import MerError


def _generate(args: argparse.Namespace) -> None:
    settings = GeneratorSettings(subjects=args.subjects, clips_per_subject=args.clips_per_subject,
                                 min_frames=args.min_frames, max_frames=args.max_frames, seed=args.seed)
    root = generate_smic_hs(Path(args.root), settings)
    print(f"wrote {settings.subjects * settings.clips_per_subject} clips in the SMIC-HS layout under {root}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write the built-in dataset (real faces, SMIC-HS layout)")
    generate.add_argument("root", help="folder to create (must be new or empty)")
    defaults = GeneratorSettings()
    generate.add_argument("--subjects", type=int, default=defaults.subjects)
    generate.add_argument("--clips-per-subject", type=int, default=defaults.clips_per_subject)
    generate.add_argument("--min-frames", type=int, default=defaults.min_frames)
    generate.add_argument("--max-frames", type=int, default=defaults.max_frames)
    generate.add_argument("--seed", type=int, default=defaults.seed)
    generate.set_defaults(handler=_generate)
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except MerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
