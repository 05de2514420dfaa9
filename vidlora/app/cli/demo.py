"""``vidlora demo``: the whole path on the embedded tiny model, in well under a minute.

It writes an example image and two LoRA files (``tiny.demo_assets``), then runs the same
functions as ``vidlora i2v`` (no command line is built and re-parsed): both LoRAs stacked,
the style one on a strength schedule, over an FP8 base, written to ``--out``.

The tiny model has random weights, so its video is a colour field that shows nothing by
itself. The demo therefore also renders the same seed and prompt with no LoRA and with
the motion LoRA alone on the same patched model (``disable`` / ``enable``: no reload), and
writes the three side by side beside ``--out`` (``demo.mp4`` -> ``demo-compare.mp4``:
no LoRA | motion | motion + style), printing how far each column is from the others. The
tiny VAE's random weights keep the visible change small (a few levels of 255 even where
the latents move by a quarter of their spread), so a second row shows each column's
difference from the no-LoRA one, amplified ``DIFF_GAIN`` times.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..tiny.demo_assets import MOTION_STRENGTH, STYLE_SCHEDULE, write_demo_assets
from .console import Messages
from .generate_cmd import denoise, open_session, pick_device, read_loras, write_result
from .plan import GenerateRequest, check_output, plan_generation
from .stages import stage

__all__ = ["run_demo", "compare_path", "column_differences", "comparison_video", "COLUMNS", "COMPARE_GAP", "DIFF_GAIN"]

COLUMNS = ("no LoRA", "motion", "motion + style")
COMPARE_GAP = 4  # white pixels between the columns (and rows) of the comparison video
DIFF_GAIN = 10.0  # the bottom row shows |column - no LoRA| x this
_PROMPT = "a yellow ball bouncing on a gradient, watercolor"
_SEED = 7


def compare_path(out: Path) -> Path:
    """Where the comparison of ``out`` goes: ``demo.mp4`` -> ``demo-compare.mp4``."""
    return out.with_name(f"{out.stem}-compare{out.suffix}")


def run_demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    say = Messages()
    out = check_output(Path(args.out).expanduser(), args.overwrite)
    compare = check_output(compare_path(out), args.overwrite)
    folder = Path(args.workdir).expanduser() if args.workdir else out.parent / "vidlora-demo"
    paths = write_demo_assets(folder)
    schedule = ",".join(f"{v:g}" for v in STYLE_SCHEDULE)
    req = GenerateRequest(
        task="i2v", model="tiny", image=str(paths["image"]), prompt=_PROMPT,
        loras=[f"{paths['motion']}:{MOTION_STRENGTH:g}", f"{paths['style']}:{schedule}"],
        fp8="w8a16", out=str(out), overwrite=args.overwrite, seed=_SEED, quiet=getattr(args, "quiet", False),
    )  # fmt: skip
    print(f"vidlora demo: example image and LoRAs in {folder}")
    print(f"the same as: vidlora i2v --model tiny --image {paths['image']} --prompt {_PROMPT!r} "
          f"--lora {req.loras[0]} --lora {req.loras[1]} --fp8 --seed {_SEED} --out {out}")  # fmt: skip

    plan = plan_generation(req, say)
    read_loras(plan, say, progress=not req.quiet)
    session = open_session(plan, say, pick_device(say, plan))
    motion, style = (r.name for r in plan.loras)
    h = session.handle
    columns = {}
    # Same seed, same patched model; only the adapters' scales change between the runs.
    for label, active in zip(COLUMNS, ((), (motion,), (motion, style))):
        for name in (motion, style):
            (h.enable if name in active else h.disable)(name)
        say.print(f"rendering column {label!r} ...")
        columns[label] = denoise(session, plan)
    write_result(plan, session, columns[COLUMNS[-1]], say, started)

    diffs = column_differences(columns)
    with stage("writing the comparison MP4"):
        from ..video import write_mp4

        metadata = {"columns": list(COLUMNS), "mean_abs_difference_0_255": diffs, "prompt": _PROMPT, "seed": _SEED,
                    "video": out.name}  # fmt: skip
        # quality 10 (CRF 0): the columns differ by a few levels of 255, which CRF 15 would blur
        write_mp4(comparison_video(list(columns.values())), compare, fps=plan.fps, quality=10, metadata=metadata,
                  overwrite=args.overwrite)  # fmt: skip
    say.print(f"wrote {compare}: {' | '.join(COLUMNS)} (left to right); below each, its difference from "
              f"{COLUMNS[0]} x{DIFF_GAIN:g}", style="green")  # fmt: skip
    say.print("  mean |difference| per pixel (0-255): " + ", ".join(f"{k} {v:.1f}" for k, v in diffs.items()))
    return 0


def column_differences(columns: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean absolute difference (0-255 scale) of each column from the ones left of it."""
    labels = list(columns)
    out = {}
    for i, right in enumerate(labels):
        for left in labels[:i]:
            out[f"{right} vs {left}"] = float(np.abs(columns[right] - columns[left]).mean() * 255)
    return out


def comparison_video(videos: list[np.ndarray]) -> np.ndarray:
    """Videos [F, H, W, 3] of one shape left to right, COMPARE_GAP white pixels apart; below
    them (after a white gap) each one's |difference| from the first, times DIFF_GAIN."""
    f, h, w, c = videos[0].shape
    white_col = np.ones((f, h, COMPARE_GAP, c), dtype=np.float32)

    def row(frames: list[np.ndarray]) -> np.ndarray:
        parts = [frames[0]]
        for v in frames[1:]:
            parts += [white_col, v]
        return np.concatenate(parts, axis=2)

    top = row([v.astype(np.float32) for v in videos])
    bottom = row([np.clip(np.abs(v - videos[0]) * DIFF_GAIN, 0, 1).astype(np.float32) for v in videos])
    white_row = np.ones((f, COMPARE_GAP, top.shape[2], c), dtype=np.float32)
    return np.concatenate([top, white_row, bottom], axis=1)
