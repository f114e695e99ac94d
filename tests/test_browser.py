"""The report and the explorer in a real browser: Debian's chromium, driven by Playwright.

`make test` installs chromium when it can (root and apt-get); without it these tests skip
and say why. Screenshots go to each test's tmp_path.
"""

from __future__ import annotations

import math
import os
import threading

import pytest

from vaelab.explore import Explorer, make_server

from .test_explore import train_on_class_folders

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


def _serve(run):
    """The explorer of ``run`` on a thread: yields its page's address."""
    server = make_server(Explorer(run))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def explorer_url(digits_run):
    yield from _serve(digits_run)


@pytest.fixture(scope="module")
def pets_url(tmp_path_factory):
    """A run on the class folders cats/ and dogs/."""
    yield from _serve(train_on_class_folders(tmp_path_factory.mktemp("pets")))


def _page(browser, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def page(browser):
    yield from _page(browser, 1400, 1000)


@pytest.fixture
def laptop(browser):
    """The narrowest window the explorer's three columns are laid out for."""
    yield from _page(browser, 1280, 800)


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


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")


def _landed(page) -> None:
    """Wait until a point is selected and the map has flown to it."""
    page.wait_for_function("explorer.selected !== null && !explorer.animating")


def _boxes(page, selector: str) -> list[tuple[float, float, float, float]]:
    """(left, top, width, height) on the page of every element ``selector`` matches."""
    return [
        tuple(box)
        for box in page.eval_on_selector_all(
            selector,
            "es => es.map(e => { const r = e.getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })",
        )
    ]


def _box(page, selector: str) -> tuple[float, float, float, float]:
    (box,) = _boxes(page, selector)
    return box


def _centres(page, selector: str) -> list[tuple[float, float]]:
    return [(x + w / 2, y + h / 2) for x, y, w, h in _boxes(page, selector)]


def _tick_labels(page) -> list[str]:
    return page.eval_on_selector_all("#axes text", "ts => ts.map(t => t.textContent)")


def _grey_levels(page, selector: str) -> list[set[int]]:
    """The red values drawn in each canvas ``selector`` matches."""
    levels = page.eval_on_selector_all(
        selector,
        """cs => cs.map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [...new Set(d.filter((_, i) => i % 4 === 0))]; })""",
    )
    return [set(values) for values in levels]


def _columns_hold(page) -> None:
    """The map, the middle column and the sliders side by side, and nothing wider than the
    window (the sliders dropped below the map after a click)."""
    left, middle, side = (_box(page, s) for s in ("#map-panel", "#middle", "#side"))
    assert left[0] + left[2] <= middle[0] and middle[0] + middle[2] <= side[0]
    assert abs(side[1] - left[1]) < 40, "the slider column is not beside the map"
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert side[0] + side[2] <= width


def test_clicking_a_point_zooms_to_its_posterior_with_its_draws_apart_on_screen(
    explorer_url, laptop, tmp_path
):
    page = laptop
    _open(page, explorer_url)
    assert page.is_hidden("#point")
    home_ticks = _tick_labels(page)
    assert "z[0]" in home_ticks and "z[1]" in home_ticks
    mx, my, mw, mh = _box(page, "#map")
    # first zoom far out with the wheel, where every posterior is a speck
    page.mouse.move(mx + mw / 2, my + mh / 2)
    page.mouse.wheel(0, 2000)
    page.wait_for_function("explorer.view.s > 10 * explorer.home.s")
    far = page.evaluate("explorer.view.s")
    x, y = page.evaluate("explorer.toScreen(11)")
    page.mouse.click(x, y)
    _landed(page)
    selected = page.evaluate("explorer.selected")
    a, b = page.evaluate("explorer.info.dims")
    loc, scale = selected["loc"], selected["scale"]
    assert math.dist(page.evaluate("p => explorer.latentToScreen(...p)", loc), (x, y)) < 12
    assert page.evaluate("explorer.view.s") < far / 4
    # the map is centred on the posterior mean and the 1σ ellipse fills a good part of it
    ((cx, cy),) = _centres(page, "#marks .loc")
    assert abs(cx - (mx + mw / 2)) < 1.5 and abs(cy - (my + mh / 2)) < 1.5
    _, _, w1, h1 = _box(page, "#marks .sigma1")
    assert max(w1, h1) > 0.3 * mw
    assert w1 / h1 == pytest.approx(scale[a] / scale[b], rel=0.02)  # one scale for both axes
    x2, y2, w2, h2 = _box(page, "#marks .sigma2")
    assert mx <= x2 and x2 + w2 <= mx + mw and my <= y2 and y2 + h2 <= my + mh
    # 16 draws z ~ q(z|x), each marked where it lies, inside the map and apart from the others
    centres = _centres(page, "#marks circle.sample")
    assert len(centres) == len(selected["samples"]) == 16
    for (px, py), z in zip(centres, selected["samples"], strict=True):
        sx, sy = page.evaluate("p => explorer.latentToScreen(...p)", [z[a], z[b]])
        assert abs(px - sx) < 0.5 and abs(py - sy) < 0.5
        assert mx < px < mx + mw and my < py < my + mh
    gaps = sorted(min(math.dist(p, q) for q in centres if q != p) for p in centres)
    assert gaps[len(gaps) // 2] > 10, f"the draws sit on top of each other: {gaps}"
    mean = [sum(c[i] for c in centres) / len(centres) for i in (0, 1)]
    spread = math.sqrt(sum(math.dist(c, mean) ** 2 for c in centres) / len(centres))
    assert spread > 0.15 * mw
    # the axes follow the zoom
    assert _tick_labels(page) != home_ticks and "z[0]" in _tick_labels(page)
    # the images: x, its reconstruction, and per draw the mean E[x|z] and a sample x ~ p(x|z)
    for canvas in ("#point-image", "#point-recon"):
        assert len(_grey_levels(page, canvas)[0]) > 1, f"{canvas} is blank"
    means, draws = _grey_levels(page, "#samples canvas"), _grey_levels(page, "#x-samples canvas")
    assert len(means) == len(draws) == 16
    assert all(levels <= {0, 255} for levels in draws)  # Bernoulli: black and white pixels
    assert any(len(levels) > 2 for levels in means)  # grey means
    assert "Bernoulli" in page.inner_text("#middle")
    _columns_hold(page)
    page.screenshot(path=tmp_path / "explore-posterior.png")
    # K up to the server's limit: 64 draws, and the layout still holds
    page.select_option("#k", "64")
    page.wait_for_function("explorer.selected.samples.length === 64 && !explorer.animating")
    assert len(_centres(page, "#marks circle.sample")) == 64
    assert page.locator("#x-samples canvas").count() == 64
    _columns_hold(page)
    # "draw again": new draws of the same posterior
    before = page.evaluate("explorer.selected.samples")
    page.click("#redraw")
    page.wait_for_function("explorer.selected.seed === 1 && !explorer.animating")
    assert page.evaluate("explorer.selected.samples") != before
    assert page.evaluate("explorer.selected.loc") == loc


def test_the_wheel_zooms_about_the_pointer_a_drag_pans_and_reset_goes_home(explorer_url, laptop):
    page = laptop
    _open(page, explorer_url)
    mx, my, mw, mh = _box(page, "#map")
    px, py = round(mx + 0.3 * mw), round(my + 0.6 * mh)  # mouse events carry whole pixels
    page.mouse.move(px, py)
    under = page.evaluate("p => explorer.screenToLatent(...p)", [px, py])
    home, ticks = page.evaluate("explorer.view"), _tick_labels(page)
    page.mouse.wheel(0, -600)  # wheel up: zoom in about the pointer
    page.wait_for_function(f"explorer.view.s < {home['s']}")
    view = page.evaluate("explorer.view")
    assert view["s"] < home["s"] / 2
    assert page.evaluate("p => explorer.screenToLatent(...p)", [px, py]) == pytest.approx(
        under, abs=0.01 * view["s"]
    )
    assert _tick_labels(page) != ticks
    # a drag moves the map with the pointer, and is not a click
    page.mouse.down()
    page.mouse.move(px + 120, py - 40, steps=6)
    page.mouse.up()
    assert page.evaluate("p => explorer.screenToLatent(...p)", [px + 120, py - 40]) == (
        pytest.approx(under, abs=0.01 * view["s"])
    )
    assert page.evaluate("explorer.selected") is None
    assert "No test point" not in page.inner_text("#hint")
    page.click("#reset")
    page.wait_for_function("!explorer.animating")
    assert page.evaluate("explorer.view") == pytest.approx(home)


FARTHEST = """() => {  // the visible dot farthest from its nearest neighbour, and that distance
  const e = explorer, pts = e.info.points.map(p => e.latentToScreen(p[0], p[1]));
  const r = document.getElementById('map').getBoundingClientRect();
  let best = [-1, 0, 0, 0];
  pts.forEach(([x, y], i) => {
    if (x < r.left + 30 || x > r.right - 30 || y < r.top + 30 || y > r.bottom - 30) return;
    let gap = Infinity, away = [0, 0];
    pts.forEach(([u, v], j) => {
      const d = Math.hypot(u - x, v - y);
      if (j !== i && d < gap) { gap = d; away = [(x - u) / d, (y - v) / d]; }
    });
    if (gap > best[1]) best = [i, gap, ...away];
  });
  return best;
}"""

EMPTIEST = """() => {  // the spot of the map farthest from every dot, and that distance
  const e = explorer, pts = e.info.points.map(p => e.latentToScreen(p[0], p[1]));
  const r = document.getElementById('map').getBoundingClientRect();
  let best = [0, 0, 0];
  for (let x = r.left + 5; x < r.right - 5; x += 5) {
    for (let y = r.top + 5; y < r.bottom - 5; y += 5) {
      const gap = Math.min(...pts.map(([u, v]) => Math.hypot(u - x, v - y)));
      if (gap > best[2]) best = [x, y, gap];
    }
  }
  return best;
}"""


def test_a_click_near_a_dot_selects_it_and_a_miss_says_so(explorer_url, laptop):
    page = laptop
    _open(page, explorer_url)
    assert page.evaluate("[explorer.HIT, explorer.DOT]") == [12, 2.5]
    i, gap, ax, ay = page.evaluate(FARTHEST)
    assert gap > 25  # room to click beside it
    x, y = page.evaluate(f"explorer.toScreen({i})")
    # its dot is at least 4 px across: coloured 2 px from its centre in every direction
    mx, my, _, _ = _box(page, "#map")
    for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2)):
        rgb = page.evaluate(
            """([x, y]) => [...document.getElementById('map').getContext('2d')
                .getImageData(Math.floor(x), Math.floor(y), 1, 1).data.slice(0, 3)]""",
            [x - mx + dx, y - my + dy],
        )
        assert sum(rgb) < 700, f"no dot 2 px from its centre: {rgb}"
    # a click far from every dot selects nothing and says so
    ex, ey, empty = page.evaluate(EMPTIEST)
    assert empty > 12
    page.mouse.click(ex, ey)
    assert "No test point within 12 px" in page.inner_text("#hint")
    assert page.evaluate("explorer.selected") is None
    # a click 10 px beside a dot selects it
    page.mouse.click(x + 10 * ax, y + 10 * ay)
    _landed(page)
    assert page.evaluate("explorer.selected.index") == i
    assert "No test point" not in page.inner_text("#hint")


CLICKABLE = """a => {  // a visible dot other than a that a click on its centre selects
  const e = explorer, r = document.getElementById('map').getBoundingClientRect();
  return e.info.points.map((_, i) => i).filter(i => {
    if (i === a) return false;
    const [x, y] = e.toScreen(i);
    const inside = x > r.left + 10 && x < r.right - 10 && y > r.top + 10 && y < r.bottom - 10;
    return inside && e.nearest(x, y) === i;
  });
}"""


def test_shift_click_and_the_button_interpolate_between_two_posterior_means(
    explorer_url, laptop, tmp_path
):
    page = laptop
    _open(page, explorer_url)
    assert page.is_disabled("#interp-button")  # nothing selected yet
    page.mouse.click(*page.evaluate("explorer.toScreen(11)"))
    _landed(page)
    a = page.evaluate("explorer.selected")
    b, c = page.evaluate(CLICKABLE, a["index"])[:2]
    page.keyboard.down("Shift")
    page.mouse.click(*page.evaluate(f"explorer.toScreen({b})"))
    page.keyboard.up("Shift")
    page.wait_for_function("explorer.interp !== null")
    interp = page.evaluate("explorer.interp")
    assert (interp["from"], interp["to"]) == (a["index"], b)
    assert page.evaluate("explorer.selected.index") == a["index"]  # the selection stays
    # 8 steps on the straight line from one posterior mean to the other, ends included
    zs = interp["z"]
    end = page.evaluate(f"explorer.info.points[{b}]")
    assert len(zs) == 8 and zs[0] == pytest.approx(a["loc"])
    assert zs[-1] == pytest.approx(end, abs=1e-4)  # /api/info rounds to 4 places
    for t, z in enumerate(zs):
        line = [u + t / 7 * (v - u) for u, v in zip(zs[0], zs[-1], strict=True)]
        assert z == pytest.approx(line)
    strip = page.eval_on_selector_all("#interp-strip canvas", "cs => cs.map(c => c.toDataURL())")
    assert len(strip) == 8 and strip[0] != strip[-1]
    assert len(_boxes(page, "#marks rect.interp-step")) == 8
    _columns_hold(page)
    page.screenshot(path=tmp_path / "explore-interpolation.png", full_page=True)
    # the button: the next plain click on a dot interpolates to it
    page.click("#interp-button")
    page.mouse.click(*page.evaluate(f"explorer.toScreen({c})"))
    page.wait_for_function(f"explorer.interp.to === {c}")
    assert page.evaluate("explorer.interp.from") == a["index"]
    assert page.locator("#interp-strip canvas").count() == 8


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


def _legend(page) -> list[str]:
    return page.eval_on_selector_all("#legend span", "es => es.map(e => e.innerText)")


def _click_a_point(page) -> dict:
    """Click the first dot a click on its centre selects; its point once the map has flown."""
    (i, *_) = page.evaluate(CLICKABLE, -1)
    page.mouse.click(*page.evaluate(f"explorer.toScreen({i})"))
    _landed(page)
    return page.evaluate("explorer.selected")


def test_the_legend_and_a_clicked_images_caption_name_the_classes(pets_url, explorer_url, laptop):
    page = laptop
    _open(page, pets_url)
    assert _legend(page) == ["cats", "dogs"]
    point = _click_a_point(page)
    name = ["cats", "dogs"][point["label"]]
    assert f"test image {point['index']} ({name}): q(z|x)" in page.inner_text("#point-info")
    assert f"({name}): zoomed" in page.inner_text("#hint")
    # labels that are plain numbers (digits) are shown as numbers
    _open(page, explorer_url)
    assert _legend(page) == [str(d) for d in range(10)]
    point = _click_a_point(page)
    assert f"(label {point['label']}): q(z|x)" in page.inner_text("#point-info")
