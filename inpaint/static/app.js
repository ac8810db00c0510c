// inpaint serve's page: photo, faces, brush/eraser/undo, regions, Fill, before/after, download.
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
  ctx.stroke(); ctx.restore();
}

function photoXY(ev) {
  const r = $("overlay").getBoundingClientRect();
  return [(ev.clientX - r.left) * $("overlay").width / r.width,
          (ev.clientY - r.top) * $("overlay").height / r.height];
}

function scale() { const r = $("overlay").getBoundingClientRect(); return $("overlay").width / r.width; }

$("overlay").addEventListener("pointerdown", (ev) => {
  if (!file) return;
  const erase = document.querySelector("input[name=tool]:checked").value === "eraser";
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
  $("fill").disabled = true; $("progress").hidden = false;
  const t0 = performance.now();
  $("status").textContent = "filling ...";
  const tick = setInterval(() => { $("status").textContent = `filling ... ${((performance.now() - t0) / 1000).toFixed(1)} s`; }, 200);
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
    $("compare").value = 100; compare(); $("result-tools").hidden = false;
    $("status").textContent = `filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
  } catch (e) { error(`The server did not answer: ${e}`); }
  finally { clearInterval(tick); $("fill").disabled = false; $("progress").hidden = true;
    if ($("status").textContent.startsWith("filling")) $("status").textContent = ""; }
};

function compare() { $("after").style.clipPath = `inset(0 ${100 - $("compare").value}% 0 0)`; }
$("compare").oninput = compare;
$("file").onchange = () => $("file").files[0] && open($("file").files[0]);
document.addEventListener("dragover", (ev) => ev.preventDefault());
document.addEventListener("drop", (ev) => { ev.preventDefault(); const f = ev.dataTransfer.files[0]; if (f) open(f); });
fetch("/api/health").then((r) => r.json()).then((h) => { $("detail-row").hidden = !h.detail; });
