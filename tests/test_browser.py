"""The report and the explorer in a real browser: Debian's chromium, driven by Playwright.

`make test` installs chromium when it can (root and apt-get); without it these tests skip
and say why. Screenshots go to each test's tmp_path.
"""

from __future__ import annotations

import os
import threading

import pytest

from vaelab.explore import Explorer, make_server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"{CHROMIUM} not found: run `make test` as root (it installs Debian's chromium) or "
        "`apt-get install chromium`",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def explorer_url(digits_run):
    server = make_server(Explorer(digits_run))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def test_the_report_shows_every_plot_without_the_network(digits_run, page, tmp_path):
    requested = []

    def route(route):  # anything but the file itself would be a fetch: refuse and record it
        requested.append(route.request.url)
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", route)
    page.goto((digits_run / "report.html").as_uri())
    sizes = page.eval_on_selector_all(
        "figure img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])"
    )
    assert len(sizes) == len(list((digits_run / "plots").glob("*.png")))
    assert all(done and width > 100 for done, width in sizes)
    assert requested == [(digits_run / "report.html").as_uri()]
    assert "test ELBO" in page.inner_text("#headline")
    page.screenshot(path=tmp_path / "report.png", full_page=True)


def _decoded(page) -> str:
    return page.evaluate("document.getElementById('decoded').toDataURL()")


def _settle(page, before: int) -> None:
    """Wait until the page has drawn a decoding newer than ``before`` and asks for no other."""
    page.wait_for_function(
        f"explorer.decodes > {before} && !explorer.inflight && !explorer.pending"
    )


def test_moving_over_the_map_decodes_live(explorer_url, page, tmp_path):
    page.goto(explorer_url)
    page.wait_for_selector("body[data-ready='1']")
    _settle(page, 0)
    box = page.locator("#map").bounding_box()
    images = []
    for fx, fy in [(0.15, 0.15), (0.85, 0.85), (0.15, 0.85)]:
        count = page.evaluate("explorer.decodes")
        page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        _settle(page, count)
        images.append(_decoded(page))
    assert len(set(images)) == 3, "the decoded image did not change as the mouse moved"
    page.screenshot(path=tmp_path / "explore-hover.png")


DARK = """([x, y]) => {  // darkest pixel (sum of r, g, b) of the map in a 3x3 around (x, y)
  const ctx = document.getElementById('map').getContext('2d');
  const d = ctx.getImageData(Math.round(x) - 1, Math.round(y) - 1, 3, 3).data;
  let best = 765;
  for (let i = 0; i < d.length; i += 4) best = Math.min(best, d[i] + d[i + 1] + d[i + 2]);
  return best;
}"""


def test_clicking_a_point_shows_its_posterior_samples_and_images(explorer_url, page, tmp_path):
    page.goto(explorer_url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.is_hidden("#point")
    x, y = page.evaluate("explorer.toScreen(11)")
    page.mouse.click(x, y)
    page.wait_for_function("explorer.selected !== null")
    page.wait_for_selector("#point:not([hidden])")
    selected = page.evaluate("explorer.selected")
    a, b = page.evaluate("explorer.info.dims")
    loc, scale = selected["loc"], selected["scale"]
    # the 1σ and 2σ ellipses pass through loc ± nσ along each axis: black strokes there
    for n in (1, 2):
        for point in ([loc[a] + n * scale[a], loc[b]], [loc[a], loc[b] - n * scale[b]]):
            pixel = page.evaluate("p => explorer.toPixel(p[0], p[1])", point)
            assert page.evaluate(DARK, pixel) < 100, f"no {n}σ ellipse at {pixel}"
    # every sample z ~ q(z|x) is a black dot on the map, and is decoded beside it
    assert len(selected["samples"]) == 16
    for z in selected["samples"]:
        pixel = page.evaluate("z => explorer.toPixel(z[0], z[1])", [z[a], z[b]])
        assert page.evaluate(DARK, pixel) < 100, f"no dot for the sample at {pixel}"
    assert page.locator("#samples canvas").count() == 16
    assert "test image" in page.inner_text("#point-info")
    # the test image and its reconstruction are drawn (not blank canvases)
    for canvas in ("#point-image", "#point-recon"):
        values = page.evaluate(
            f"""() => {{ const c = document.querySelector('{canvas}');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return new Set(d.filter((_, i) => i % 4 === 0)).size; }}"""
        )
        assert values > 1, f"{canvas} is blank"
    page.screenshot(path=tmp_path / "explore-click.png")


def test_sliders_traverse_one_dimension(explorer_url, page, tmp_path):
    page.goto(explorer_url)
    page.wait_for_selector("body[data-ready='1']")
    _settle(page, 0)
    page.wait_for_function("document.querySelectorAll('#strip canvas').length === 9")
    before = _decoded(page)
    count = page.evaluate("explorer.decodes")
    page.locator("#slider-0").fill("2.5")  # fires the slider's input event
    _settle(page, count)
    assert page.evaluate("explorer.z[0]") == 2.5
    assert _decoded(page) != before
    strip = page.eval_on_selector_all("#strip canvas", "cs => cs.map(c => c.toDataURL())")
    assert len(strip) == 9 and len(set(strip)) > 1  # z[.] from -3 to 3: the image changes
    page.screenshot(path=tmp_path / "explore-slider.png")
