"""``vidlora`` command line: i2v, t2v, inspect, demo, tune, bench; convert, merge, extract, loras; sweep, serve.

Every user error is one line on stderr and exit code 2, never a traceback. An error from
inside a library during a run is one line naming the stage and exit code 1; ``--debug``
(or ``VIDLORA_DEBUG=1``) prints its traceback first. Importing this module, and parsing
and checking a command's arguments, imports no torch (see ``plan.py``).
"""

from __future__ import annotations

import logging
import sys
import traceback

from vidlora.errors import VidloraError

from .parallel import rank_prefix
from .parser import EXIT_USER_ERROR, build_parser
from .stages import StageError, debug_requested
from .tools_cmd import TOOL_COMMANDS

__all__ = ["main"]

_EXIT_STAGE_ERROR = 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad argument (already printed)
        return int(e.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # --gpus runs the same command line again
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return _dispatch(args)
    except VidloraError as e:
        print(f"vidlora: {rank_prefix()}error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except StageError as e:
        if debug_requested(args):
            traceback.print_exception(e.__cause__)
        hint = "" if debug_requested(args) else " (--debug or VIDLORA_DEBUG=1 prints the traceback)"
        print(f"vidlora: {rank_prefix()}error: {e}{hint}", file=sys.stderr)
        return _EXIT_STAGE_ERROR
    except KeyboardInterrupt:
        print("vidlora: interrupted", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if getattr(args, "lora_dir", None):
        from vidlora.lora.lora_dirs import use_lora_dirs

        use_lora_dirs(args.lora_dir)  # --lora NAME looks there (before VIDLORA_LORA_DIRS and the Hub)
    # Each command's module is imported only when it runs: none imports torch at import time.
    if args.command in TOOL_COMMANDS:
        from .tools_cmd import run_tool

        return run_tool(args)
    if args.command in ("i2v", "t2v", "v2v"):
        from .generate_cmd import run_generate

        return run_generate(args, task=args.command)
    if args.command == "inspect":
        from .inspect_cmd import run_inspect

        return run_inspect(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args)
    if args.command in ("sweep", "serve"):
        from .scale_cmds import run_serve_cmd, run_sweep_cmd

        return run_sweep_cmd(args) if args.command == "sweep" else run_serve_cmd(args)
    if args.command == "tune":
        from .tune_cmd import run_tune

        if args.rank is None:
            args.rank = [32]
        return run_tune(args)
    if args.command == "bench":
        from vidlora.benchmarks.suite import run_suite

        return run_suite(args)
    raise AssertionError(args.command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
