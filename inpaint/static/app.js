// inpaint serve's page: photo, faces, brush/eraser/undo, regions (buttons or a click on the
// photo), Fill with progress, before/after (slider and toggle), download.
"use strict";
const $ = (id) => document.getElementById(id);
const canvases = ["photo", "after", "paint", "overlay"].map($);
let file = null, faces = [], strokes = [], regions = new Set(), current = null, resultUrl = null;

function error(text) { $("error").textContent = text || ""; }

async function jsonError(resp) {
  try { return (await resp.json()).error; } catch (e) { return `HTTP ${resp.status}`; }
}

async function open(f) {
  error(""); file = f; strokes = []; regions.clear(); faces = [];
  const img = new Image();
  img.src = URL.createObjectURL(f);
  try { await img.decode(); } catch (e) { error("This file is not a photo the browser can show."); return; }
  for (const c of canvases) { c.width = img.naturalWidth; c.height = img.naturalHeight; }
  $("photo").getContext("2d").drawImage(img, 0, 0);
  $("after").getContext("2d").clearRect(0, 0, img.naturalWidth, img.naturalHeight);
  $("result-tools").hidden = true; $("fill").disabled = false;
  $("stage").style.height = `${$("photo").getBoundingClientRect().height}px`;
  const body = new FormData(); body.append("image", f);
  const resp = await fetch("/api/faces", { method: "POST", body });
  if (!resp.ok) { error(await jsonError(resp)); return; }
  faces = (await resp.json()).faces;
  if (!faces.length) error("No face found in this photo: the fill works on faces only.");
  showRegions(); redraw();
}

function showRegions() {
  const box = $("regions"); box.textContent = "";
  if (!faces.length) return;
  for (const name of Object.keys(faces[0].regions)) {
    const b = document.createElement("button"); b.type = "button"; b.textContent = name;
    b.classList.toggle("on", regions.has(name));
    b.onclick = () => { regions.has(name) ? regions.delete(name) : regions.add(name);
      b.classList.toggle("on", regions.has(name)); redraw(); };
    box.appendChild(b);
  }
}

function outline(ctx, hull, grow, fill) {
  ctx.beginPath(); hull.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
  if (fill) { ctx.fill(); ctx.lineWidth = 2 * grow; ctx.lineJoin = "round"; ctx.stroke(); }
  else { ctx.stroke(); }
}

function redraw() {
  const o = $("overlay").getContext("2d"); o.clearRect(0, 0, o.canvas.width, o.canvas.height);
  faces.forEach((face, k) => {
    o.strokeStyle = k ? "#ffd050" : "#50ff80"; o.lineWidth = Math.max(2, o.canvas.width / 300);
    outline(o, face.regions.face[0], 0, false);
  });
  if (faces.length) {
    o.fillStyle = o.strokeStyle = "rgba(224,64,96,0.55)";
    for (const name of regions) for (const hull of faces[0].regions[name]) outline(o, hull, faces[0].grow, true);
  }
  const p = $("paint").getContext("2d"); p.clearRect(0, 0, p.canvas.width, p.canvas.height);
  for (const s of strokes) drawStroke(p, s);
}

function drawStroke(ctx, s) {
  ctx.save(); ctx.globalCompositeOperation = s.erase ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = "rgb(224,32,80)"; ctx.lineWidth = s.size;
  ctx.lineCap = ctx.lineJoin = "round"; ctx.beginPath();
  s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  if (s.points.length === 1) ctx.lineTo(s.points[0][0] + 0.01, s.points[0][1]);
  if (s.closed) { ctx.closePath(); ctx.fill(); }
  ctx.stroke(); ctx.restore();
}

function photoXY(ev) {
  const r = $("overlay").getBoundingClientRect();
  return [(ev.clientX - r.left) * $("overlay").width / r.width,
          (ev.clientY - r.top) * $("overlay").height / r.height];
}

function scale() { const r = $("overlay").getBoundingClientRect(); return $("overlay").width / r.width; }

// The named regions (not the whole face) whose outline holds the point, smallest first.
const PICKABLE = ["mouth", "nose", "left-eye", "right-eye", "left-eyebrow", "right-eyebrow"];
function regionAt([x, y]) {
  const ctx = $("overlay").getContext("2d"), hits = [];
  faces.forEach((face, k) => {
    for (const name of PICKABLE) {
      for (const hull of face.regions[name] || []) {
        const path = new Path2D(); hull.forEach(([hx, hy], i) => (i ? path.lineTo(hx, hy) : path.moveTo(hx, hy)));
        path.closePath(); ctx.lineWidth = 2 * face.grow + 4;
        if (ctx.isPointInPath(path, x, y) || ctx.isPointInStroke(path, x, y)) hits.push({ k, name, hull, area: area(hull) });
      }
    }
  });
  return hits.sort((a, b) => a.area - b.area)[0];
}
function area(hull) {
  let a = 0; hull.forEach(([x, y], i) => { const [u, v] = hull[(i + 1) % hull.length]; a += x * v - u * y; });
  return Math.abs(a) / 2;
}
function pick(xy) {
  const hit = regionAt(xy);
  if (!hit) { error("Click inside a mouth, nose, eye or eyebrow (outlined once picked)."); return; }
  error("");
  if (hit.k === 0) { // the largest face: the same as its button
    regions.has(hit.name) ? regions.delete(hit.name) : regions.add(hit.name); showRegions();
  } else { // another face: its region's outline goes into the painted mask (undo removes it)
    strokes.push({ erase: false, size: 2 * faces[hit.k].grow, points: hit.hull, closed: true });
  }
  redraw();
}

$("overlay").addEventListener("pointerdown", (ev) => {
  if (!file) return;
  const tool = document.querySelector("input[name=tool]:checked").value;
  if (tool === "region") { pick(photoXY(ev)); return; }
  const erase = tool === "eraser";
  current = { erase, size: +$("size").value * scale(), points: [photoXY(ev)] };
  strokes.push(current); $("overlay").setPointerCapture(ev.pointerId); redraw();
});
$("overlay").addEventListener("pointermove", (ev) => {
  if (current) { current.points.push(photoXY(ev)); redraw(); }
});
$("overlay").addEventListener("pointerup", () => { current = null; });
$("undo").onclick = () => { strokes.pop(); redraw(); };

function maskBlob() {
  // white = keep, black = fill, photo-sized, as `inpaint fill --mask`
  const m = document.createElement("canvas"); m.width = $("paint").width; m.height = $("paint").height;
  const c = m.getContext("2d"); c.drawImage($("paint"), 0, 0);
  c.globalCompositeOperation = "source-in"; c.fillStyle = "#000"; c.fillRect(0, 0, m.width, m.height);
  c.globalCompositeOperation = "destination-over"; c.fillStyle = "#fff"; c.fillRect(0, 0, m.width, m.height);
  return new Promise((ok) => m.toBlob(ok, "image/png"));
}

$("fill").onclick = async () => {
  error("");
  const body = new FormData(); body.append("image", file);
  if (strokes.some((s) => !s.erase)) body.append("mask", await maskBlob(), "mask.png");
  for (const r of regions) body.append("region", r);
  if (!strokes.length && !regions.size) { error("Paint over what should go, or pick a region."); return; }
  if ($("init").value !== "auto") body.append("init", $("init").value);
  if ($("iters").value !== "") body.append("iters", $("iters").value);
  if (!$("detail-row").hidden) body.append("detail", $("detail").value);
  const shown = /^image\/(jpeg|png|webp|bmp)$/.test(file.type);
  body.append("format", shown ? "same" : "png");
  const job = Math.random().toString(36).slice(2) + Date.now().toString(36);
  body.append("job", job);
  $("fill").disabled = true; $("progress").hidden = false; $("progress").removeAttribute("value");
  const t0 = performance.now();
  $("status").textContent = "filling ...";
  const tick = setInterval(() => { $("status").textContent = `filling ... ${((performance.now() - t0) / 1000).toFixed(1)} s`; }, 200);
  const poll = setInterval(() => showProgress(job), 400);
  try {
    const resp = await fetch("/api/fill", { method: "POST", body });
    if (!resp.ok) { error(await jsonError(resp)); return; }
    const blob = await resp.blob();
    const img = new Image(); img.src = URL.createObjectURL(blob); await img.decode();
    $("after").getContext("2d").drawImage(img, 0, 0);
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = img.src;
    const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
    $("download").href = resultUrl; $("download").download = name ? name[1] : "filled.png";
    strokes = []; regions.clear(); showRegions(); redraw();
    $("compare").value = 100; before = false; compare(); $("result-tools").hidden = false;
    $("status").textContent = `filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  } catch (e) { error(`The server did not answer: ${e}`); }
  finally { clearInterval(tick); clearInterval(poll); $("progress-text").textContent = "";
    $("fill").disabled = false; $("progress").hidden = true;
    if ($("status").textContent.startsWith("filling")) $("status").textContent = ""; }
};

const STAGES = { detect: "finding faces", search: "searching the model", blend: "blending into the photo",
  detail: "adding the photo's detail" };
async function showProgress(job) {
  let p;
  try { const r = await fetch(`/api/progress?job=${job}`); if (!r.ok) return; p = await r.json(); }
  catch (e) { return; }
  if ($("progress").hidden) return; // the answer came after the fill
  if (p.state === "queued") { $("progress-text").textContent = `waiting for ${p.queue - 1} other fill(s)`; return; }
  const face = p.faces > 1 ? `face ${p.face} of ${p.faces}: ` : "";
  const step = p.stage === "search" ? ` ${p.iteration}/${p.iterations}` : "";
  $("progress-text").textContent = `${face}${STAGES[p.stage] || p.stage || "starting"}${step}`;
  if (p.stage === "search" && p.iterations) $("progress").value = p.iteration / p.iterations;
  else $("progress").removeAttribute("value");
}

let before = false;
function compare() {
  $("after").style.clipPath = `inset(0 ${100 - $("compare").value}% 0 0)`;
  $("after").style.visibility = before ? "hidden" : "visible";
  $("toggle").textContent = before ? "Show after" : "Show before";
}
$("compare").oninput = () => { before = false; compare(); };
$("toggle").onclick = () => { before = !before; compare(); };
$("file").onchange = () => $("file").files[0] && open($("file").files[0]);
document.addEventListener("dragover", (ev) => ev.preventDefault());
document.addEventListener("drop", (ev) => { ev.preventDefault(); const f = ev.dataTransfer.files[0]; if (f) open(f); });
fetch("/api/health").then((r) => r.json()).then((h) => { $("detail-row").hidden = !h.detail; });
