"""Take the README's screenshots of `vaelab report` and `vaelab explore` with Playwright.

    python docs/screenshots.py REPORT_RUN EXPLORE_RUN [--index I] [--to J] [--out docs/img]
        [--only report|explore]

writes ``report.png`` (the top of REPORT_RUN/report.html, which must exist) and, from the
explorer on EXPLORE_RUN in a 1280-pixel-wide window: ``explore-posterior.png`` (test image I
clicked: the map zoomed to its posterior q(z|x), the mouse on one draw x ~ p(x|z), which marks
its z on the map) and ``explore.png`` (the whole map again, with the interpolation from I to
test image J, the mouse over the map). ``--only`` takes one of the two pages.
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
    parser.add_argument("--to", type=int, default=1, help="test image to interpolate to")
    parser.add_argument("--only", choices=["report", "explore"], help="one page only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = make_server(Explorer(args.explore_run))
    written = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1250, "height": 1180})
            if args.only != "explore":
                page.goto((args.report_run / "report.html").resolve().as_uri())
                page.screenshot(path=args.out / "report.png")
                written.append("report.png")
            if args.only != "report":
                explore(page, f"http://127.0.0.1:{server.server_address[1]}/", args)
                written += ["explore-posterior.png", "explore.png"]
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    print("wrote " + ", ".join(str(args.out / name) for name in written))


def explore(page, url: str, args: argparse.Namespace) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    page.mouse.click(*page.evaluate(f"explorer.toScreen({args.index})"))
    page.wait_for_function("explorer.selected !== null && !explorer.animating")
    page.hover("#x-samples canvas >> nth=3")  # a draw x ~ p(x|z): its z_3 is marked
    page.wait_for_function("!explorer.inflight && !explorer.pending")
    page.wait_for_timeout(300)  # the debounced traversal strip
    page.screenshot(path=args.out / "explore-posterior.png")
    page.click("#reset")
    page.wait_for_function("!explorer.animating")
    page.keyboard.down("Shift")
    page.mouse.click(*page.evaluate(f"explorer.toScreen({args.to})"))
    page.keyboard.up("Shift")
    page.wait_for_function("explorer.interp !== null")
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + 0.3 * box["width"], box["y"] + 0.3 * box["height"])
    page.wait_for_function("!explorer.inflight && !explorer.pending")
    page.set_viewport_size({"width": 1280, "height": 960})
    page.screenshot(path=args.out / "explore.png")


if __name__ == "__main__":
    main()
