"""Take the README's screenshots of `vaelab report` and `vaelab explore` with Playwright.

    python docs/screenshots.py REPORT_RUN EXPLORE_RUN [--index I] [--out docs/img]

writes ``report.png`` (the top of REPORT_RUN/report.html, which must exist) and
``explore.png`` (the explorer on EXPLORE_RUN, the mouse over the map, test image I clicked).
Needs Debian's chromium at /usr/bin/chromium (``make browser``).
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

from vaelab.explore import Explorer, make_server

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report_run", type=Path)
    parser.add_argument("explore_run", type=Path)
    parser.add_argument("--index", type=int, default=0, help="test image to click")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = make_server(Explorer(args.explore_run))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1250, "height": 1180})
            page.goto((args.report_run / "report.html").resolve().as_uri())
            page.screenshot(path=args.out / "report.png")
            page.set_viewport_size({"width": 1680, "height": 780})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("body[data-ready='1']")
            x, y = page.evaluate(f"explorer.toScreen({args.index})")
            page.mouse.click(x, y)
            page.wait_for_selector("#point:not([hidden])")
            page.mouse.move(x + 40, y - 60)  # the live decoding of a z beside it
            page.wait_for_function("!explorer.inflight && !explorer.pending")
            page.wait_for_timeout(300)  # the debounced traversal strip
            page.screenshot(path=args.out / "explore.png")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    print(f"wrote {args.out / 'report.png'} and {args.out / 'explore.png'}")


if __name__ == "__main__":
    main()
