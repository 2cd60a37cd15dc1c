// The deband page: a queue of uploads, one restore at a time, a before/after slider.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { items: [], current: null, busy: false, limits: null, split: 50 };

// --- settings ---------------------------------------------------------------------------

function pair(numberId, rangeId) {
  const num = $(numberId), range = $(rangeId);
  const changed = () => { num.dataset.touched = "1"; settingsChanged(); };
  range.addEventListener("input", () => { num.value = range.value; changed(); });
  num.addEventListener("input", () => { range.value = num.value; changed(); });
}

function settings() {
  const steps = Number($("steps").value), strength = Number($("strength").value);
  if (!Number.isInteger(steps) || steps < 1 || steps > 100) return { error: "Steps must be a whole number from 1 to 100." };
  if (!(strength > 0 && strength <= 1)) return { error: "Strength must be above 0 and at most 1." };
  return { steps, strength };
}

function settingsChanged() {
  const s = settings();
  setStatus(s.error || "");
  $("rerun").disabled = !!s.error || !state.current || state.current.status === "working";
}

// --- the queue ----------------------------------------------------------------------------

function addFiles(files) {
  for (const file of files) {
    const item = { file, name: file.name, status: "waiting", result: null, error: "" };
    const limit = state.limits && state.limits.max_upload_bytes;
    if (limit && file.size > limit) {
      item.status = "error";
      item.error = `${file.name}: larger than the upload limit of ${formatBytes(limit)}`;
    }
    state.items.push(item);
    if (!state.current) state.current = item;
  }
  renderQueue();
  pump();
}

async function pump() {
  if (state.busy) return;
  const item = state.items.find((it) => it.status === "waiting");
  if (!item) return;
  const s = settings();
  if (s.error) { setStatus(s.error); return; }
  state.busy = true;
  item.status = "working";
  renderQueue();
  if (item === state.current) show(item);
  try {
    item.result = await upload(item.file, s);
    item.status = "done";
  } catch (err) {
    item.status = "error";
    item.error = err.message;
  }
  state.busy = false;
  renderQueue();
  if (item === state.current) show(item);
  pump();
}

async function upload(file, s) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("steps", String(s.steps));
  form.append("strength", String(s.strength));
  let response;
  try {
    response = await fetch("/api/deband", { method: "POST", body: form });
  } catch (err) {
    throw new Error(`${file.name}: the server did not answer (${err.message})`);
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) throw new Error((body && body.error) || `${file.name}: failed (HTTP ${response.status})`);
  return body;
}

function renderQueue() {
  const list = $("queue");
  list.replaceChildren();
  if (!state.items.length) {
    list.innerHTML = '<li class="none">None yet</li>';
    return;
  }
  for (const item of state.items) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = `item ${item.status}`;
    button.setAttribute("aria-current", item === state.current ? "true" : "false");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.name;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = { waiting: "waiting", working: "working…", done: "done", error: "failed" }[item.status];
    button.append(name, badge);
    button.addEventListener("click", () => { state.current = item; renderQueue(); show(item); });
    li.append(button);
    list.append(li);
  }
}

// --- showing a result ---------------------------------------------------------------------

function show(item) {
  const r = item && item.result;
  $("stage").hidden = !r;
  $("placeholder").hidden = !!r;
  $("placeholder").textContent = item && item.status === "working" ? `Working on ${item.name}…` :
    "Drop an image anywhere on this page to start.";
  for (const [id, name] of [["before", "before.png"], ["after", "after.png"],
                            ["heat-before", "banding-before.png"], ["heat-after", "banding-after.png"]]) {
    if (r) $(id).src = r.files[name]; else $(id).removeAttribute("src");
  }
  $("cambi-before").textContent = r ? r.cambi_before.toFixed(2) : "–";
  $("cambi-after").textContent = r ? r.cambi_after.toFixed(2) : "–";
  link($("dl16"), r && r.downloads.png16);
  link($("dl8"), r && r.downloads.png8);
  $("info").textContent = r ? `${r.name} · ${r.width}×${r.height} · ${r.bits}-bit input · ` +
    `${r.steps} step${r.steps === 1 ? "" : "s"}, strength ${r.strength} · ${r.seconds.toFixed(1)} s` : "";
  document.body.dataset.result = r ? r.id : "";
  setStatus(item && item.status === "error" ? item.error : item && item.status === "working" ? "Restoring…" : "");
  $("status").classList.toggle("error", !!(item && item.status === "error"));
  settingsChanged();
  if (item && item.status === "error") setStatus(item.error);
  if (r) fit();
}

function link(a, href) {
  if (href) { a.href = href; a.removeAttribute("aria-disabled"); }
  else { a.removeAttribute("href"); a.setAttribute("aria-disabled", "true"); }
}

function setStatus(text) { $("status").textContent = text; }

function formatPixels(n) { return n >= 1e6 ? `${Math.round(n / 1e6)} MP` : `${n} pixels`; }

function formatBytes(n) { return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MB` : `${(n / 1024).toFixed(0)} KB`; }

// The stage takes the image's aspect ratio, as large as the viewport allows.
function fit() {
  const r = state.current && state.current.result;
  if (!r) return;
  const box = $("viewport").getBoundingClientRect();
  const scale = Math.min((box.width - 16) / r.width, (box.height - 16) / r.height);
  const stage = $("stage");
  stage.style.width = `${Math.max(1, Math.floor(r.width * scale))}px`;
  stage.style.height = `${Math.max(1, Math.floor(r.height * scale))}px`;
  stage.classList.toggle("pixelated", scale >= 2);
}

// --- the before/after slider --------------------------------------------------------------

function setSplit(value) {
  state.split = Math.min(100, Math.max(0, value));
  const pct = `${state.split}%`;
  $("stage").style.setProperty("--split", pct);
  const handle = $("handle");
  handle.setAttribute("aria-valuenow", String(Math.round(state.split)));
  handle.setAttribute("aria-valuetext", `${Math.round(state.split)}% before`);
}

function splitAt(clientX) {
  const box = $("stage").getBoundingClientRect();
  setSplit(((clientX - box.left) / box.width) * 100);
}

function sliderKeys(event) {
  const big = event.shiftKey ? 10 : 2;
  const moves = { ArrowLeft: -big, ArrowDown: -big, ArrowRight: big, ArrowUp: big, PageDown: -10, PageUp: 10 };
  if (event.key in moves) setSplit(state.split + moves[event.key]);
  else if (event.key === "Home") setSplit(0);
  else if (event.key === "End") setSplit(100);
  else return;
  event.preventDefault();
}

function wireSlider() {
  const stage = $("stage"), handle = $("handle");
  stage.addEventListener("pointerdown", (e) => {
    stage.setPointerCapture(e.pointerId);
    splitAt(e.clientX);
    handle.focus({ preventScroll: true });
    e.preventDefault();
  });
  stage.addEventListener("pointermove", (e) => { if (stage.hasPointerCapture(e.pointerId)) splitAt(e.clientX); });
  handle.addEventListener("keydown", sliderKeys);
  setSplit(50);
}

// --- dropping files -----------------------------------------------------------------------

function wireDrop() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  });
}

async function loadLimits() {
  try {
    const response = await fetch("/api/limits");
    state.limits = await response.json();
    $("limits").textContent = `up to ${formatBytes(state.limits.max_upload_bytes)} and ` +
      `${formatPixels(state.limits.max_pixels)} each`;
    for (const name of ["steps", "strength"]) {  // the server's defaults, unless already set by hand
      if (!$(name).dataset.touched) $(name).value = $(`${name}-range`).value = state.limits[name].default;
    }
  } catch (_) {
    setStatus("The server did not answer; is `deband serve` still running?");
  }
}

function init() {
  pair("steps", "steps-range");
  pair("strength", "strength-range");
  $("rerun").addEventListener("click", () => {
    const item = state.current;
    if (!item || item.status === "working") return;
    item.status = "waiting";  // the previous result stays on show until the new one is ready
    renderQueue();
    show(item);
    pump();
  });
  wireSlider();
  wireDrop();
  new ResizeObserver(fit).observe($("viewport"));
  loadLimits();
}

document.addEventListener("DOMContentLoaded", init);
