"""Load a run's report.html in headless Chromium and check that every <audio> element reports a duration.

    python scripts/check_report_browser.py RUN_DIR [--chromium chromium] [--budget-ms 20000]

Not part of CI (it needs a browser: Debian `apt-get install chromium`). It writes a copy of the page beside
it (`.report-check.html`, removed afterwards) with a small script that loads every player's metadata and
writes the results into the page, dumps the DOM with `chromium --headless --dump-dom`, and prints one line
per audio file: its duration in the browser and in soundfile. Exit 1 when any player has no duration or the
two disagree by more than 50 ms.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import soundfile as sf

PROBE = """
<script>
(async () => {
  const players = Array.from(document.querySelectorAll("audio"));
  const one = (a) => new Promise((done) => {
    const finish = (error) => done({src: a.getAttribute("src"), duration: a.duration, error});
    if (a.readyState >= 1) return finish(null);
    a.addEventListener("loadedmetadata", () => finish(null), {once: true});
    a.addEventListener("error", () => finish(a.error ? a.error.code : "error"), {once: true});
    a.preload = "metadata";
    a.load();
  });
  const results = await Promise.all(players.map(one));
  const out = document.createElement("pre");
  out.id = "gsv-audio-check";
  out.textContent = JSON.stringify(results);
  document.body.appendChild(out);
})();
</script>
"""


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--budget-ms", type=int, default=20000)
    args = parser.parse_args()
    page = args.run_dir / "report.html"
    if not page.is_file():
        print(f"error: {page} does not exist (run `gsv-train report {args.run_dir}`)", file=sys.stderr)
        return 2
    browser = shutil.which(args.chromium)
    if browser is None:
        print(f"error: {args.chromium} not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    probe_page = args.run_dir / ".report-check.html"
    probe_page.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), "utf-8")
    try:
        dom = subprocess.run(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required",
                f"--virtual-time-budget={args.budget_ms}",
                "--dump-dom",
                probe_page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=args.budget_ms / 1000 + 120,
            check=True,
        ).stdout
    finally:
        probe_page.unlink(missing_ok=True)
    found = re.search(r'<pre id="gsv-audio-check">(.*?)</pre>', dom, re.S)
    if found is None:
        print("error: the page's audio check did not finish within the time budget", file=sys.stderr)
        return 1
    results = json.loads(html.unescape(found.group(1)))
    bad = 0
    print(f"{'audio':<60} {'browser s':>10} {'file s':>8}  verdict")
    for r in results:
        path = args.run_dir / unquote(r["src"])
        info = sf.info(path)
        expected = info.frames / info.samplerate
        duration = r["duration"]
        ok = r["error"] is None and isinstance(duration, float | int) and abs(duration - expected) <= 0.05
        bad += not ok
        shown = f"{duration:.3f}" if isinstance(duration, float | int) else str(duration)
        print(f"{r['src']:<60} {shown:>10} {expected:>8.3f}  {'ok' if ok else 'FAIL ' + str(r['error'])}")
    print(f"{len(results)} audio element(s), {bad} without a matching duration")
    return 1 if bad or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
