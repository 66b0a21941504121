"""Command line of the trainer: `python -m dsa_core.train <stage> [--config FILE] [--resume]`."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from . import STAGES
from .common import Run, keep_freed_memory, load_config, run_stage
from .export import export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dsa_core.train", description=__doc__)
    parser.add_argument("stage", choices=[*STAGES, "export"], help="which stage to run")
    parser.add_argument("--config", help="JSON or TOML file overriding the stage's defaults")
    parser.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    parser.add_argument("--dest", default=None, help="export: target folder (default: weights/tiny of the source tree)")
    parser.add_argument("--model", choices=["tiny", "wan-1.3b"], help="confidence-head: whose generator")
    args = parser.parse_args(argv)
    try:
        if args.stage == "export":
            export(args.config, args.dest)
            return 0
        stage_cls = STAGES[args.stage]
        cfg = load_config(stage_cls.Config, args.config)  # every config error surfaces before any work
        if args.model is not None:
            if not hasattr(cfg, "base"):
                raise ValueError("--model applies only to the confidence-head stage")
            cfg = dataclasses.replace(cfg, base=args.model)
        keep_freed_memory()
        run_stage(stage_cls(cfg, Run.from_env()), resume=args.resume)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
