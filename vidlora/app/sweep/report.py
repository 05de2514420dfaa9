"""What a person looks at after a sweep: ``contact_sheet.png`` and ``index.html``.

Both are laid out as the grid was asked: one row per LoRA setting (set and strengths),
one column per prompt/seed pair. A sheet cell is the first, middle and last frame of the
job's MP4 (decoded back from the file, so it shows what was written); a failed job is a
grey cell saying so. The page plays the videos side by side, with each job's settings
under it and a button that restarts them all together.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from .plan_file import describe_loras

__all__ = ["CONTACT_SHEET", "INDEX", "THUMB_H", "LABEL_W", "HEADER_H", "grid_of", "write_contact_sheet", "write_index",
           "key_frames"]  # fmt: skip

CONTACT_SHEET = "contact_sheet.png"
INDEX = "index.html"
THUMB_H = 96  # px per frame in the sheet; tiny videos are scaled up (nearest), large ones down
LABEL_W = 240
HEADER_H = 36
_GAP = 4


def grid_of(jobs: list) -> tuple[list[str], list[str], dict[tuple[int, int], Any]]:
    """(row labels, column labels, (row, col) -> job) for SweepJobs, in plan order."""
    rows: dict[str, int] = {}
    cols: dict[str, int] = {}
    cells = {}
    for job in jobs:
        r = rows.setdefault(describe_loras(job.spec.loras), len(rows))
        c = cols.setdefault(f"{job.spec.prompt} / seed {job.spec.seed}", len(cols))
        cells.setdefault((r, c), job)
    return list(rows), list(cols), cells


def key_frames(path: Path) -> list[np.ndarray]:
    """First, middle and last frame of an MP4 (uint8 [H, W, 3])."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]
    if not frames:
        return []
    return [frames[0], frames[len(frames) // 2], frames[-1]]


def write_contact_sheet(folder: Path, jobs: list, lines: dict[str, dict]) -> Path:
    """Rows = LoRA settings, columns = prompt/seed, cells = first/middle/last frame."""
    from PIL import Image, ImageDraw

    rows, cols, cells = grid_of(jobs)
    thumbs: dict[tuple[int, int], list] = {}
    cell_w = 3 * THUMB_H
    for key, job in cells.items():
        line = lines.get(job.file)
        mp4 = folder / job.file
        if line and line.get("error") is None and mp4.is_file():
            frames = key_frames(mp4)
            if frames:
                h, w = frames[0].shape[:2]
                tw = max(1, round(w * THUMB_H / h))
                resample = Image.NEAREST if h < THUMB_H else Image.LANCZOS
                thumbs[key] = [Image.fromarray(f).resize((tw, THUMB_H), resample) for f in frames]
                cell_w = max(cell_w, 3 * tw + 2)
    width = LABEL_W + len(cols) * (cell_w + _GAP)
    height = HEADER_H + len(rows) * (THUMB_H + _GAP)
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for c, label in enumerate(cols):
        draw.text((LABEL_W + c * (cell_w + _GAP) + 2, 4), _clip(label, cell_w), fill=(230, 230, 230))
    for r, label in enumerate(rows):
        y = HEADER_H + r * (THUMB_H + _GAP)
        draw.text((4, y + THUMB_H // 2 - 6), _clip(label, LABEL_W), fill=(230, 230, 230))
        for c in range(len(cols)):
            x = LABEL_W + c * (cell_w + _GAP)
            if (r, c) in thumbs:
                for i, im in enumerate(thumbs[(r, c)]):
                    sheet.paste(im, (x + i * (im.width + 1), y))
            elif (r, c) in cells:
                draw.rectangle((x, y, x + cell_w - 1, y + THUMB_H - 1), fill=(70, 70, 70))
                state = "failed" if (lines.get(cells[(r, c)].file) or {}).get("error") else "not made"
                draw.text((x + 6, y + THUMB_H // 2 - 6), state, fill=(255, 110, 110))
    path = folder / CONTACT_SHEET
    tmp = path.with_name(f".{path.name}.part")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def write_index(folder: Path, jobs: list, lines: dict[str, dict], title: str) -> Path:
    """The videos side by side (the same grid as the sheet), each with its settings."""
    rows, cols, cells = grid_of(jobs)
    out = [
        "<!doctype html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        "<style>body{font:13px sans-serif;background:#181818;color:#ddd}table{border-collapse:collapse}"
        "td,th{padding:4px;vertical-align:top;border:1px solid #333}video{max-width:320px;display:block}"
        ".err{color:#f77;max-width:320px;white-space:pre-wrap}pre{max-width:320px;white-space:pre-wrap;font-size:11px}"
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p><button onclick="document.querySelectorAll(\'video\').forEach(v=>{v.currentTime=0;v.play()})">'
        "restart all together</button> <a href=\"contact_sheet.png\">contact sheet</a> "
        '<a href="manifest.jsonl">manifest.jsonl</a></p>',
        "<table><tr><th>LoRA setting</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>",
    ]  # fmt: skip
    for r, label in enumerate(rows):
        out.append(f"<tr><th>{html.escape(label)}</th>")
        for c in range(len(cols)):
            job = cells.get((r, c))
            if job is None:
                out.append("<td></td>")
                continue
            line = lines.get(job.file) or {}
            settings = html.escape(json.dumps({k: v for k, v in line.items() if k != "error"}, indent=1))
            if line.get("error") is None and (folder / job.file).is_file():
                src = html.escape(job.file, quote=True)
                body = f'<video src="{src}" muted loop autoplay playsinline controls></video>'
            else:
                body = f'<div class="err">{html.escape(line.get("error") or "not made yet")}</div>'
            out.append(f"<td>{body}<details><summary>{html.escape(job.file)}</summary><pre>{settings}</pre></details></td>")
        out.append("</tr>")
    out.append("</table></body></html>")
    path = folder / INDEX
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _clip(text: str, width_px: int) -> str:
    most = max(4, width_px // 6 - 1)  # PIL's default bitmap font: ~6 px a character
    return text if len(text) <= most else text[: most - 3] + "..."
