"""Screenshot of a run's report.html with headless Chromium, for the README (kept under 300 KB).

    python scripts/report_screenshot.py runs/demo/sovits docs/report-screenshot.png

What made docs/report-screenshot.png (the README demo, then this script):

    python -m gptsovits_train prepare --sample --config configs/demo.yaml --out runs/demo-data
    python -m gptsovits_train fit --config configs/demo.yaml --run-dir runs/demo --force
    python scripts/report_screenshot.py runs/demo/sovits docs/report-screenshot.png

The page is rendered at `--width` CSS pixels in a tall window, the empty bottom is cropped, and the image is
stored as an optimised 256-colour PNG. Needs `chromium` (Debian: apt-get install chromium) and Pillow.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_png", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=3000, help="window height; the empty bottom is cropped")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    page = args.run_dir / "report.html"
    browser = shutil.which(args.chromium)
    if not page.is_file() or browser is None:
        print(f"error: needs {page} and {args.chromium} on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--virtual-time-budget=5000",
                f"--window-size={args.width},{args.height}",
                f"--screenshot={shot}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=180,
            check=True,
        )
        image = Image.open(shot).convert("RGB")
    pixels = np.asarray(image)
    rows = np.nonzero((pixels < 250).any(axis=(1, 2)))[0]
    bottom = min(int(rows[-1]) + 24, image.height) if len(rows) else image.height
    image = image.crop((0, 0, image.width, bottom)).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    args.out_png.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out_png, optimize=True)
    print(f"wrote {args.out_png}: {image.width}x{image.height}, {args.out_png.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
