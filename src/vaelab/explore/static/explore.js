// vaelab explore: the latent map, live decodings, a clicked point's posterior, traversals.
// Plain JavaScript on canvases; the server decodes every z with the trained model.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const K = 16;          // samples z ~ q(z|x) drawn for a clicked point
const STRIP = 9;       // images in a one-dimension traversal
const ex = {           // the page's state; tests read it through window.explorer
  info: null, z: null, selected: null, decodes: 0, extent: null,
  inflight: false, pending: null, mouse: null,
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

// --- coordinates: latent (map dims) <-> canvas pixels ---------------------------------------
function computeExtent(points) {
  let lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
  for (const p of points) for (let a = 0; a < 2; a++) {
    lo[a] = Math.min(lo[a], p[a]); hi[a] = Math.max(hi[a], p[a]);
  }
  for (let a = 0; a < 2; a++) {  // pad by 8%, and never narrower than one prior σ
    const pad = Math.max(0.08 * (hi[a] - lo[a]), 0.5);
    lo[a] -= pad; hi[a] += pad;
  }
  return {lo, hi};
}
function toPixel(u, v) {
  const c = $("map"), e = ex.extent;
  return [(u - e.lo[0]) / (e.hi[0] - e.lo[0]) * c.width,
          (1 - (v - e.lo[1]) / (e.hi[1] - e.lo[1])) * c.height];
}
function toLatent(px, py) {
  const c = $("map"), e = ex.extent;
  return [e.lo[0] + px / c.width * (e.hi[0] - e.lo[0]),
          e.lo[1] + (1 - py / c.height) * (e.hi[1] - e.lo[1])];
}
ex.toPixel = toPixel;
ex.toScreen = (i) => {  // page coordinates of test point i (for tests and tooling)
  const [x, y] = toPixel(...ex.info.points[i]);
  const r = $("map").getBoundingClientRect();
  return [r.left + x, r.top + y];
};

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
function newImageCanvas(pixels, size) {
  const c = document.createElement("canvas");
  c.width = c.height = size;
  paint(c, pixels);
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

// --- the map --------------------------------------------------------------------------------
let pointLayer = null;  // the test points drawn once; redrawn only when the page loads
function drawPoints() {
  const c = $("map");
  pointLayer = document.createElement("canvas");
  pointLayer.width = c.width; pointLayer.height = c.height;
  const ctx = pointLayer.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height);
  ctx.globalAlpha = ex.info.points.length > 3000 ? 0.45 : 0.8;
  ex.info.points.forEach((p, i) => {
    const label = ex.info.labels ? ex.info.labels[i] : 0;
    ctx.fillStyle = PALETTE[((label % 10) + 10) % 10];
    const [x, y] = toPixel(p[0], p[1]);
    ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
  });
}
function ellipse(ctx, loc, scale, n, dashed) {
  const [a, b] = ex.info.dims;
  const [cx, cy] = toPixel(loc[a], loc[b]);
  const [ex1] = toPixel(loc[a] + n * scale[a], loc[b]);
  const [, ey1] = toPixel(loc[a], loc[b] + n * scale[b]);
  ctx.setLineDash(dashed ? [5, 4] : []);
  ctx.beginPath();
  ctx.ellipse(cx, cy, Math.max(Math.abs(ex1 - cx), 1), Math.max(Math.abs(cy - ey1), 1), 0, 0, 2 * Math.PI);
  ctx.stroke();
}
function drawMap() {
  const c = $("map"), ctx = c.getContext("2d");
  ctx.drawImage(pointLayer, 0, 0);
  const [a, b] = ex.info.dims;
  const [x, y] = toPixel(ex.z[a], ex.z[b]);  // the chosen point: a cross, under the posterior
  ctx.strokeStyle = "#d00"; ctx.lineWidth = 2; ctx.setLineDash([]);
  ctx.beginPath(); ctx.moveTo(x - 7, y); ctx.lineTo(x + 7, y); ctx.moveTo(x, y - 7);
  ctx.lineTo(x, y + 7); ctx.stroke();
  if (ex.selected) {
    const s = ex.selected;
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ellipse(ctx, s.loc, s.scale, 1, false);
    ellipse(ctx, s.loc, s.scale, 2, true);
    ctx.setLineDash([]);
    ctx.fillStyle = "#000";
    for (const z of s.samples) {
      const [x, y] = toPixel(z[a], z[b]);
      ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
    }
  }
}
function nearest(px, py) {
  let best = -1, bestD = 100;  // within 10 px
  ex.info.points.forEach((p, i) => {
    const [x, y] = toPixel(p[0], p[1]);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}
function mousePosition(event) {
  const r = $("map").getBoundingClientRect();
  return [(event.clientX - r.left) * $("map").width / r.width,
          (event.clientY - r.top) * $("map").height / r.height];
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
      drawMap(); decode(ex.z); drawStrip();
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
    $("strip").replaceChildren(...r.images.map((p) => newImageCanvas(p, 56)));
  }, 120);
}

// --- a clicked point ------------------------------------------------------------------------
async function select(index) {
  const p = await api(`/api/point?index=${index}&k=${K}`);
  ex.selected = p;
  ex.z = p.loc.slice();
  paint($("point-image"), p.image);
  paint($("point-recon"), p.reconstruction);
  $("samples").replaceChildren(...p.decodings.map((d) => newImageCanvas(d, 42)));
  const label = p.label === null ? "" : `, label ${p.label}`;
  const [a, b] = ex.info.dims;
  $("point-info").textContent = `test image ${index}${label}: q(z|x) mean ` +
    `(${p.loc[a].toFixed(2)}, ${p.loc[b].toFixed(2)}), σ (${p.scale[a].toFixed(3)}, ` +
    `${p.scale[b].toFixed(3)}) in z[${a}], z[${b}]; ellipses at 1σ (solid) and 2σ (dashed)`;
  $("point").hidden = false; $("point-none").hidden = true;
  syncSliders(); drawMap(); decode(ex.z); drawStrip();
}

async function main() {
  ex.info = await api("/api/info");
  const info = ex.info;
  $("run").textContent = info.run;
  $("summary").textContent = `${info.points.length} test images; latent size ` +
    `${info.latent_dim}; map dimensions z[${info.dims[0]}] (x) and z[${info.dims[1]}] (y).`;
  if (info.labels) {
    const seen = [...new Set(info.labels)].sort((p, q) => p - q).slice(0, 20);
    $("legend").innerHTML = seen.map((l) =>
      `<span><i style="background:${PALETTE[((l % 10) + 10) % 10]}"></i>${l}</span>`).join("");
  }
  ex.extent = computeExtent(info.points);
  ex.z = new Array(info.latent_dim).fill(0);  // start at the prior's mean
  drawPoints(); buildSliders(); syncSliders(); drawMap(); decode(ex.z); drawStrip();
  const map = $("map");
  map.addEventListener("mousemove", (event) => {
    const [u, v] = toLatent(...mousePosition(event));
    const z = ex.z.slice();
    z[info.dims[0]] = u; z[info.dims[1]] = v;
    ex.mouse = [u, v];
    decode(z);
  });
  map.addEventListener("click", (event) => {
    const [px, py] = mousePosition(event);
    const i = nearest(px, py);
    if (i >= 0) { select(i); return; }
    const [u, v] = toLatent(px, py);  // empty space: choose that z
    ex.z[info.dims[0]] = u; ex.z[info.dims[1]] = v;
    syncSliders(); drawMap(); decode(ex.z); drawStrip();
  });
  document.body.dataset.ready = "1";
}

main().catch((e) => { document.body.dataset.error = e.message; $("summary").textContent = "error: " + e.message; });
