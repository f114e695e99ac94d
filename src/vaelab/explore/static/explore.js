// vaelab explore: the latent map (zoom, pan, axes), live decodings, a clicked point's posterior
// q(z|x) with its K draws decoded both as E[x|z] and as x ~ p(x|z), interpolation between two
// posterior means, traversals. Plain JavaScript: the test points are dots on a canvas; what is
// drawn over them (axes, ellipses, the draws, paths) is SVG, so each mark has an element a test
// or a user's tooling can find on the screen. The server decodes every z with the trained model.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const K_CHOICES = [1, 4, 8, 16, 32, 64];
const K_DEFAULT = 16;   // draws z ~ q(z|x) for a clicked point
const STRIP = 9;        // images in a one-dimension traversal
const INTERP = 8;       // images on the line between two posterior means, both ends included
const HIT = 12;         // CSS px: a click selects the nearest test point at most this far away
const DOT = 2.5;        // CSS px: radius of a test point's dot (5 px across)
const W = 500, H = 500; // the plot area, CSS px; one latent unit spans as many px on both axes
const MARGIN = {left: 48, top: 8, right: 12, bottom: 40};  // room for ticks and axis labels
const ZOOM_LIMITS = [1e-4, 50];  // latent units per px, relative to the home view's
const NS = "http://www.w3.org/2000/svg";
const ex = {            // the page's state; tests read it through window.explorer
  info: null, z: null, selected: null, decodes: 0, view: null, home: null, ticks: null,
  inflight: false, pending: null, mouse: null, animating: false, animation: null,
  k: K_DEFAULT, seed: 0, interp: null, armed: false, drag: null, hot: null,
  HIT, DOT, INTERP,
};
window.explorer = ex;

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  const value = await response.json();
  if (!response.ok) throw new Error(value.error || response.statusText);
  return value;
}

function hint(text, warn = false) {
  $("hint").textContent = text;
  $("hint").classList.toggle("warn", warn);
}
const HINT = `Wheel: zoom about the pointer. Drag: pan. Click a dot (within ${HIT} px) for its ` +
  "posterior; shift-click a second dot to interpolate.";

// --- the view: latent (map dims) <-> plot-area CSS pixels ------------------------------------
// ex.view = {cx, cy, s}: the latent point at the centre of the plot and latent units per px.
function toPixel(u, v) {
  const {cx, cy, s} = ex.view;
  return [W / 2 + (u - cx) / s, H / 2 - (v - cy) / s];
}
function toLatent(px, py) {
  const {cx, cy, s} = ex.view;
  return [cx + (px - W / 2) * s, cy - (py - H / 2) * s];
}
ex.toPixel = toPixel;
ex.toLatent = toLatent;
ex.latentToScreen = (u, v) => {  // page coordinates of a latent point (for tests and tooling)
  const [x, y] = toPixel(u, v);
  const r = $("map").getBoundingClientRect();
  return [r.left + x * r.width / W, r.top + y * r.height / H];
};
ex.toScreen = (i) => ex.latentToScreen(...ex.info.points[i]);
ex.screenToLatent = (x, y) => toLatent(...mousePosition({clientX: x, clientY: y}));

function homeView(points) {  // every point, padded by 8% and never narrower than one prior σ
  const lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
  for (const p of points) for (let a = 0; a < 2; a++) {
    lo[a] = Math.min(lo[a], p[a]); hi[a] = Math.max(hi[a], p[a]);
  }
  for (let a = 0; a < 2; a++) {
    const pad = Math.max(0.08 * (hi[a] - lo[a]), 0.5);
    lo[a] -= pad; hi[a] += pad;
  }
  return {cx: (lo[0] + hi[0]) / 2, cy: (lo[1] + hi[1]) / 2,
          s: Math.max(hi[0] - lo[0], hi[1] - lo[1]) / W};
}
function posteriorView(p) {
  // the 2σ ellipse and every draw inside the view with a margin: the 1σ ellipse spans about
  // 40% of it, and draws σ apart are some 80 px apart on the screen, whatever σ is
  const [a, b] = ex.info.dims;
  let half = 0;
  for (const d of [a, b]) {
    half = Math.max(half, 2.5 * p.scale[d]);
    for (const z of p.samples) half = Math.max(half, 1.12 * Math.abs(z[d] - p.loc[d]));
  }
  return {cx: p.loc[a], cy: p.loc[b], s: 2 * half / W};
}
function clampScale(s) {
  return Math.min(Math.max(s, ex.home.s * ZOOM_LIMITS[0]), ex.home.s * ZOOM_LIMITS[1]);
}
function setView(view) {
  ex.animation = null; ex.animating = false;  // the user's zoom or pan stops a flight
  ex.view = {...view, s: clampScale(view.s)};
  drawMap();
}
function zoomAt(px, py, factor) {  // the latent point under (px, py) stays under it
  const [u, v] = toLatent(px, py);
  const s = clampScale(ex.view.s * factor);
  setView({cx: u - (px - W / 2) * s, cy: v + (py - H / 2) * s, s});
}
function animateTo(target, ms = 350) {  // fly: centre linear, scale geometric, eased
  const start = ex.view, t0 = performance.now();
  const goal = {...target, s: clampScale(target.s)};
  const frame = (now) => {
    if (ex.animation !== frame) return;  // superseded by another flight, a zoom or a pan
    const t = Math.min(1, (now - t0) / ms), e = t * t * (3 - 2 * t);
    ex.view = {cx: start.cx + (goal.cx - start.cx) * e, cy: start.cy + (goal.cy - start.cy) * e,
               s: start.s * (goal.s / start.s) ** e};
    drawMap();
    if (t < 1) requestAnimationFrame(frame);
    else { ex.animation = null; ex.animating = false; }
  };
  ex.animation = frame; ex.animating = true;
  requestAnimationFrame(frame);
}

// --- axes: ticks at 1, 2 or 5 times a power of ten, following the view -----------------------
function ticks(lo, hi) {
  const raw = (hi - lo) / 6, power = 10 ** Math.floor(Math.log10(raw)), f = raw / power;
  const step = power * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const out = [];
  for (let i = Math.ceil(lo / step); i <= Math.floor(hi / step); i++) {
    const label = (i * step).toFixed(digits);
    out.push([i * step, /^-0(\.0*)?$/.test(label) ? label.slice(1) : label]);
  }
  return out;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawAxes() {
  const [u0, v0] = toLatent(0, H), [u1, v1] = toLatent(W, 0);
  ex.ticks = {
    x: ticks(u0, u1).map(([t, label]) => [toPixel(t, 0)[0], label]),
    y: ticks(v0, v1).map(([t, label]) => [toPixel(0, t)[1], label]),
  };
  const {left, top} = MARGIN, [a, b] = ex.info.dims, marks = [];
  marks.push(svg("rect", {class: "frame", x: left, y: top, width: W, height: H}));
  for (const [x, label] of ex.ticks.x) {
    marks.push(svg("line", {class: "tick", x1: left + x, x2: left + x, y1: top + H, y2: top + H + 5}));
    marks.push(svg("text", {x: left + x, y: top + H + 17, "text-anchor": "middle"}, label));
  }
  for (const [y, label] of ex.ticks.y) {
    marks.push(svg("line", {class: "tick", x1: left - 5, x2: left, y1: top + y, y2: top + y}));
    marks.push(svg("text", {x: left - 7, y: top + y + 4, "text-anchor": "end"}, label));
  }
  marks.push(svg("text", {class: "axis-label", id: "x-label", x: left + W / 2, y: top + H + 34,
                          "text-anchor": "middle"}, `z[${a}]`));
  marks.push(svg("text", {class: "axis-label", id: "y-label", x: 0, y: 0, "text-anchor": "middle",
                          transform: `translate(13 ${top + H / 2}) rotate(-90)`}, `z[${b}]`));
  $("axes").replaceChildren(...marks);
}

// --- the map: dots on the canvas, the rest as SVG over it ------------------------------------
function colour(i) {
  const label = ex.info.labels ? ex.info.labels[i] : 0;
  return PALETTE[((label % 10) + 10) % 10];
}
function drawPoints() {
  const c = $("map"), ctx = c.getContext("2d"), dpr = c.width / W;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  ctx.strokeStyle = "#eee"; ctx.lineWidth = 1; ctx.beginPath();  // a grid at the ticks
  for (const [x] of ex.ticks.x) { ctx.moveTo(x, 0); ctx.lineTo(x, H); }
  for (const [y] of ex.ticks.y) { ctx.moveTo(0, y); ctx.lineTo(W, y); }
  ctx.stroke();
  const paths = new Map();  // one path per colour: 10,000 dots in a few fills
  ex.info.points.forEach((p, i) => {
    const [x, y] = toPixel(p[0], p[1]);
    if (x < -DOT || x > W + DOT || y < -DOT || y > H + DOT) return;
    const key = colour(i);
    if (!paths.has(key)) paths.set(key, new Path2D());
    paths.get(key).moveTo(x + DOT, y);
    paths.get(key).arc(x, y, DOT, 0, 2 * Math.PI);
  });
  // fainter under a posterior, whose marks are the subject then
  ctx.globalAlpha = ex.selected ? 0.4 : ex.info.points.length > 3000 ? 0.5 : 0.8;
  for (const [key, path] of paths) { ctx.fillStyle = key; ctx.fill(path); }
  ctx.globalAlpha = 1;
}
function drawOverlay() {
  const [a, b] = ex.info.dims, marks = [];
  if (ex.interp) {
    const steps = ex.interp.z.map((z) => toPixel(z[a], z[b]));
    marks.push(svg("polyline", {class: "interp-path", points: steps.map((p) => p.join(",")).join(" ")}));
    steps.forEach(([x, y], i) => marks.push(svg("rect", {
      class: "interp-step", x: x - 3.5, y: y - 3.5, width: 7, height: 7, "data-i": i})));
  }
  if (ex.selected) {
    const p = ex.selected, [cx, cy] = toPixel(p.loc[a], p.loc[b]);
    const [ra, rb] = p.ellipse.semi_axes, angle = p.ellipse.angle;
    for (const n of [2, 1]) {
      const attrs = {class: `sigma${n}`, cx, cy,
        rx: Math.max(n * ra / ex.view.s, 1), ry: Math.max(n * rb / ex.view.s, 1)};
      // the angle turns z[a] towards z[b], counterclockwise; the screen's y axis points down
      if (angle !== 0) attrs.transform = `rotate(${-angle} ${cx} ${cy})`;
      marks.push(svg("ellipse", attrs));
    }
    p.samples.forEach((z, k) => {
      const [x, y] = toPixel(z[a], z[b]), hot = k === ex.hot;
      marks.push(svg("circle", {class: hot ? "sample hot" : "sample", cx: x, cy: y,
                                r: hot ? 7 : 4, "data-k": k}));
    });
    marks.push(svg("circle", {class: "loc", cx, cy, r: 6}));
  }
  const [x, y] = toPixel(ex.z[a], ex.z[b]);  // the sliders' z: a red cross
  marks.push(svg("path", {class: "cursor", d: `M${x - 7},${y}h14M${x},${y - 7}v14`}));
  $("marks").replaceChildren(...marks);
}
function drawMap() { drawAxes(); drawPoints(); drawOverlay(); }

function nearest(px, py) {  // the test point nearest (px, py), if within HIT px; else -1
  let best = -1, bestD = HIT * HIT * (1 + 1e-9);  // on a tie, the first point
  ex.info.points.forEach((p, i) => {
    const [x, y] = toPixel(p[0], p[1]);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}
ex.nearest = (x, y) => nearest(...mousePosition({clientX: x, clientY: y}));
function mousePosition(event) {  // plot-area CSS px
  const r = $("map").getBoundingClientRect();
  return [(event.clientX - r.left) * W / r.width, (event.clientY - r.top) * H / r.height];
}

// --- images ---------------------------------------------------------------------------------
function paint(canvas, pixels) {
  const {channels, height, width} = ex.info.image;
  const small = document.createElement("canvas");
  small.width = width; small.height = height;
  const ctx = small.getContext("2d"), data = ctx.createImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) data.data[4 * i + c] = pixels[i * channels + (channels === 3 ? c : 0)];
    data.data[4 * i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  const out = canvas.getContext("2d");
  out.imageSmoothingEnabled = false;
  out.drawImage(small, 0, 0, canvas.width, canvas.height);
}
function newImageCanvas(pixels, size, title) {
  const c = document.createElement("canvas");
  c.width = c.height = size;
  if (title) c.title = title;
  paint(c, pixels);
  return c;
}
function sampleTile(pixels, k, title) {  // pointing at it marks its z_k on the map
  const c = newImageCanvas(pixels, 38, title);
  c.dataset.k = k;
  c.addEventListener("mouseenter", () => { ex.hot = k; drawOverlay(); });
  c.addEventListener("mouseleave", () => { ex.hot = null; drawOverlay(); });
  return c;
}

// --- decoding z, one request in flight at a time (the latest z wins) -------------------------
function decode(z) {
  if (ex.inflight) { ex.pending = z; return; }
  ex.inflight = true;
  api("/api/decode", {z: [z]}).then((r) => {
    paint($("decoded"), r.images[0]);
    ex.decodes += 1;
    const [a, b] = ex.info.dims;
    $("zinfo").textContent = `z[${a}] = ${z[a].toFixed(2)}, z[${b}] = ${z[b].toFixed(2)}`;
  }).catch((e) => { $("zinfo").textContent = "error: " + e.message; })
    .finally(() => {
      ex.inflight = false;
      if (ex.pending) { const next = ex.pending; ex.pending = null; decode(next); }
    });
}

// --- sliders and the traversal strip --------------------------------------------------------
function buildSliders() {
  const order = ex.info.kl_per_dim.map((kl, d) => [kl, d]).sort((p, q) => q[0] - p[0]);
  for (const [kl, d] of order) {
    const label = document.createElement("label");
    label.innerHTML = `<span>z[${d}] (KL ${kl.toFixed(2)})</span>` +
      `<input type="range" min="-3" max="3" step="0.01" id="slider-${d}">` +
      `<output id="value-${d}"></output>`;
    $("sliders").appendChild(label);
    label.querySelector("input").addEventListener("input", (e) => {
      ex.z[d] = Number(e.target.value);
      $(`value-${d}`).textContent = ex.z[d].toFixed(2);
      drawOverlay(); decode(ex.z); drawStrip();
    });
    const option = document.createElement("option");
    option.value = d; option.textContent = `z[${d}]`;
    $("strip-dim").appendChild(option);
  }
  $("strip-dim").addEventListener("change", drawStrip);
}
function syncSliders() {
  ex.z.forEach((v, d) => {
    $(`slider-${d}`).value = Math.max(-3, Math.min(3, v));
    $(`value-${d}`).textContent = v.toFixed(2);
  });
}
let stripTimer = null;
function drawStrip() {  // debounced: a dragged slider asks once it rests
  clearTimeout(stripTimer);
  stripTimer = setTimeout(async () => {
    const d = Number($("strip-dim").value);
    const zs = [];
    for (let i = 0; i < STRIP; i++) {
      const z = ex.z.slice(); z[d] = -3 + 6 * i / (STRIP - 1); zs.push(z);
    }
    const r = await api("/api/decode", {z: zs});
    $("strip").replaceChildren(...r.images.map((p) => newImageCanvas(p, 30)));
  }, 120);
}

// --- a clicked point: its posterior, zoomed to -----------------------------------------------
function labelName(l) {  // a class's name (a class folder, a table's label), else its number
  return ex.info.label_names[l] ?? String(l);
}
function describe(p) {
  if (p.label === null) return `test image ${p.index}`;
  const named = ex.info.label_names.length > 0;  // "(cats)", else "(label 3)"
  return `test image ${p.index} (${named ? "" : "label "}${labelName(p.label)})`;
}
let asked = 0;  // the latest point request; an earlier answer arriving late is dropped
async function select(index) {
  const ticket = ++asked;
  const p = await api(`/api/point?index=${index}&k=${ex.k}&seed=${ex.seed}`);
  if (ticket !== asked) return;
  ex.selected = p; ex.hot = null;
  ex.z = p.loc.slice();
  paint($("point-image"), p.image);
  paint($("point-recon"), p.reconstruction);
  const [a, b] = ex.info.dims;
  $("samples").replaceChildren(...p.decodings.map((d, k) => sampleTile(d, k, `E[x|z_${k}]`)));
  $("x-samples").replaceChildren(...p.x_samples.map((d, k) => sampleTile(d, k, `x_${k} ~ p(x|z_${k})`)));
  $("point-info").textContent = `${describe(p)}: q(z|x) mean ` +
    `(${p.loc[a].toFixed(2)}, ${p.loc[b].toFixed(2)}), σ (${p.scale[a].toFixed(3)}, ` +
    `${p.scale[b].toFixed(3)}) in z[${a}], z[${b}]; ellipses at 1σ (solid) and 2σ (dashed)` +
    (p.draws ? `, mean and ellipses estimated from ${p.draws} draws, ` : ", ") +
    `${p.samples.length} draws z_k ~ q(z|x) (seed ${p.seed}).`;
  $("point").hidden = false; $("point-none").hidden = true;
  $("interp-button").disabled = false;
  syncSliders(); decode(ex.z); drawStrip();
  animateTo(posteriorView(p));
  hint(`${describe(p)}: zoomed to its posterior q(z|x). Shift-click another dot to ` +
    'interpolate; "reset view" to see all.');
}

// --- interpolation between two posterior means ---------------------------------------------
function figure(p) {  // a test image with its name under it
  const f = document.createElement("figure"), caption = document.createElement("figcaption");
  caption.textContent = describe(p);
  f.append(newImageCanvas(p.image, 38), caption);
  return f;
}
async function interpolate(from, index) {
  const to = await api(`/api/point?index=${index}&k=1`);
  const zs = [];
  for (let i = 0; i < INTERP; i++) {
    const t = i / (INTERP - 1);
    zs.push(from.loc.map((v, d) => (1 - t) * v + t * to.loc[d]));
  }
  const r = await api("/api/decode", {z: zs});
  ex.interp = {from: from.index, to: index, z: zs};
  $("interp-ends").replaceChildren(figure(from), "→", figure(to));
  $("interp-info").textContent =
    `E[x|z] on the straight line between their posterior means, ${INTERP} steps:`;
  $("interp-strip").replaceChildren(...r.images.map((p, i) =>
    newImageCanvas(p, 38, `t = ${(i / (INTERP - 1)).toFixed(2)}`)));
  $("interp").hidden = false; $("interp-none").hidden = true;
  drawOverlay();
  hint(`Interpolated from ${describe(from)} to ${describe(to)}: the purple path on the map.`);
}
function arm(on) {
  ex.armed = on;
  $("interp-button").classList.toggle("armed", on);
  if (on) hint(`Click a second dot: the line from ${describe(ex.selected)}'s posterior mean ` +
    "to its own is decoded.");
}

function onClick(px, py, shift) {
  const i = nearest(px, py);
  if (i < 0) {
    hint(`No test point within ${HIT} px of the click: nothing happened. Click on a dot, ` +
      "or zoom in with the wheel to tell close dots apart.", true);
    return;
  }
  const pair = shift || ex.armed;
  arm(false);
  if (pair && ex.selected && i !== ex.selected.index) {
    interpolate(ex.selected, i).catch((e) => hint("error: " + e.message, true));
  } else {
    select(i).catch((e) => hint("error: " + e.message, true));
  }
}

function legend(info) {
  if (!info.labels) return;
  const seen = [...new Set(info.labels)].sort((p, q) => p - q).slice(0, 20);
  // text nodes, not HTML: a class is named after a folder, which may hold < or &
  $("legend").replaceChildren(...seen.map((l) => {
    const entry = document.createElement("span"), swatch = document.createElement("i");
    swatch.style.background = PALETTE[((l % 10) + 10) % 10];
    entry.append(swatch, labelName(l));
    return entry;
  }));
}

function listen() {
  const map = $("map");
  map.addEventListener("wheel", (event) => {
    event.preventDefault();
    const lines = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1;
    zoomAt(...mousePosition(event), Math.exp(event.deltaY * lines * 0.0015));
  }, {passive: false});
  map.addEventListener("mousedown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();  // no text selection while dragging
    ex.drag = {x: event.clientX, y: event.clientY, view: ex.view, moved: false};
  });
  window.addEventListener("mousemove", (event) => {
    const drag = ex.drag;
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!drag.moved && dx * dx + dy * dy < 9) return;  // a click may wobble by 2 px
    drag.moved = true; map.classList.add("dragging");
    const r = map.getBoundingClientRect(), s = drag.view.s * W / r.width;
    setView({cx: drag.view.cx - dx * s, cy: drag.view.cy + dy * s, s: drag.view.s});
  });
  window.addEventListener("mouseup", (event) => {
    const drag = ex.drag;
    ex.drag = null; map.classList.remove("dragging");
    if (drag && !drag.moved) onClick(...mousePosition(event), event.shiftKey);
  });
  map.addEventListener("mousemove", (event) => {
    if (ex.drag && ex.drag.moved) return;
    const [u, v] = toLatent(...mousePosition(event));
    const z = ex.z.slice();
    z[ex.info.dims[0]] = u; z[ex.info.dims[1]] = v;
    ex.mouse = [u, v];
    decode(z);
  });
  $("reset").addEventListener("click", () => animateTo(ex.home));
  $("interp-button").addEventListener("click", () => arm(!ex.armed));
  $("k").addEventListener("change", () => {
    ex.k = Number($("k").value);
    if (ex.selected) select(ex.selected.index);
  });
  $("redraw").addEventListener("click", () => { ex.seed += 1; select(ex.selected.index); });
}

async function main() {
  ex.info = await api("/api/info");
  const info = ex.info;
  $("run").textContent = info.run;
  $("summary").textContent = `${info.points.length} test images; latent size ` +
    `${info.latent_dim}; map dimensions z[${info.dims[0]}] (x) and z[${info.dims[1]}] (y); ` +
    `p(x|z) ${info.likelihood}.`;
  $("likelihood").textContent = info.likelihood;
  legend(info);
  for (const k of K_CHOICES.filter((k) => k <= info.max_k)) {
    $("k").add(new Option(String(k), String(k), k === K_DEFAULT, k === K_DEFAULT));
  }
  // the map's canvas at the screen's resolution, laid out in CSS px
  const map = $("map"), dpr = window.devicePixelRatio || 1;
  map.width = Math.round(W * dpr); map.height = Math.round(H * dpr);
  Object.assign(map.style, {width: `${W}px`, height: `${H}px`, left: `${MARGIN.left}px`,
                            top: `${MARGIN.top}px`});
  const box = {width: MARGIN.left + W + MARGIN.right, height: MARGIN.top + H + MARGIN.bottom};
  Object.assign($("map-box").style, {width: `${box.width}px`, height: `${box.height}px`});
  $("overlay").setAttribute("width", box.width); $("overlay").setAttribute("height", box.height);
  for (const [k, v] of Object.entries({x: MARGIN.left, y: MARGIN.top, width: W, height: H})) {
    $("plot").setAttribute(k, v);  // a nested svg clips the marks to the plot area
  }
  ex.home = homeView(info.points);
  ex.view = ex.home;
  ex.z = new Array(info.latent_dim).fill(0);  // start at the prior's mean
  buildSliders(); syncSliders(); drawMap(); decode(ex.z); drawStrip();
  hint(HINT);
  listen();
  document.body.dataset.ready = "1";
}

main().catch((e) => { document.body.dataset.error = e.message; $("summary").textContent = "error: " + e.message; });
