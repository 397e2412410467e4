// imgsum's page: choose or sample an image, caption it with the chosen model, save it. No framework, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  drop: $("drop"), preview: $("preview"), hint: $("drop-hint"), file: $("file"), choose: $("choose"),
  sample: $("sample"), attribution: $("attribution"), notice: $("notice"), model: $("model"), beam: $("beam"),
  generate: $("generate"), caption: $("caption"), concepts: $("concepts"), timing: $("timing"), save: $("save"),
  error: $("error"), outputDir: $("output-dir"), savedList: $("saved-list"), savedEmpty: $("saved-empty"),
};

const state = {
  image: null,      // {blob, name, sampleId}
  result: null,     // the last caption: {caption, model, beam, seconds}
  busy: false,
  models: [],
  maxUpload: Infinity,
  previewUrl: null,
};

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the imgsum server cannot be reached (" + err.message + ")");
  }
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((body && body.error) || ("HTTP " + response.status));
  }
  return body;
}

function showError(message) {
  ui.error.textContent = message || "";
  ui.error.hidden = !message;
}

function setBusy(busy, label) {
  state.busy = busy;
  document.body.setAttribute("aria-busy", busy ? "true" : "false");
  for (const el of [ui.choose, ui.sample, ui.model, ui.beam, ui.file]) el.disabled = busy || (el === ui.model && !state.models.length);
  ui.generate.disabled = busy || !state.image || !state.models.length;
  ui.save.disabled = busy || !state.result || !state.image;
  ui.drop.classList.toggle("disabled", busy);
  if (busy && label) {
    ui.caption.textContent = label;
    ui.caption.classList.add("busy");
    showConcepts([]);
    ui.timing.textContent = "";
  }
}

function setImage(blob, name, sampleId = null, attribution = null, notice = null) {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(blob);
  state.image = { blob, name: name || "image", sampleId };
  state.result = null;
  ui.preview.src = state.previewUrl;
  ui.preview.alt = "the chosen image: " + (name || "image");
  ui.preview.hidden = false;
  ui.hint.hidden = true;
  ui.drop.classList.add("has-image");
  ui.caption.textContent = "";
  ui.caption.classList.remove("busy");
  showConcepts([]);
  ui.timing.textContent = "";
  showAttribution(attribution);
  ui.notice.textContent = notice || "";
  ui.notice.hidden = !notice;
  showError("");
  setBusy(false);
}

// The visual concepts the model saw, as tags under the caption: the word and its probability in percent.
function showConcepts(concepts) {
  ui.concepts.replaceChildren(...concepts.map((c) => {
    const li = document.createElement("li");
    li.className = "concept";
    const word = document.createElement("span");
    word.className = "concept-word";
    word.textContent = c.word;
    const p = document.createElement("span");
    p.className = "concept-p";
    p.textContent = c.p < 0.005 ? "<1%" : `${Math.round(c.p * 100)}%`;
    li.title = `${c.word}: ${(c.p * 100).toFixed(1)}%`;
    li.append(word, p);
    return li;
  }));
  ui.concepts.hidden = !concepts.length;
}

function link(text, href) {
  const a = document.createElement("a");
  a.textContent = text;
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function showAttribution(attr) {
  ui.attribution.replaceChildren();
  if (!attr) { ui.attribution.hidden = true; return; }
  if (attr.photographer && attr.photographer_url && attr.source_url) {
    // Unsplash's guidelines: "Photo by <photographer> on Unsplash", both linked.
    ui.attribution.append("Photo by ", link(attr.photographer, attr.photographer_url), " on ",
                          link("Unsplash", attr.source_url));
  } else {
    ui.attribution.append("Sample photo: " + attr.text);
  }
  ui.attribution.hidden = false;
}

function dataUrlToBlob(url) {
  // Decoded here rather than fetched: the page's Content-Security-Policy allows connections to itself only.
  const [head, data] = url.split(",", 2);
  const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}

function acceptFile(file) {
  if (!file) return;
  if (file.size > state.maxUpload) {
    showError(`${file.name}: ${(file.size / 1048576).toFixed(1)} MiB, more than the limit of ` +
              `${(state.maxUpload / 1048576).toFixed(0)} MiB`);
    return;
  }
  setImage(file, file.name);
}

async function loadSample() {
  showError("");
  setBusy(true, "Loading a sample image…");
  try {
    const s = await api("/api/sample");
    const blob = dataUrlToBlob(s.data_url);
    setImage(blob, s.filename, s.id, s.attribution, s.notice);
  } catch (err) {
    setBusy(false);
    ui.caption.textContent = "";
    showError("Could not load a sample image: " + err.message);
  }
}

async function generate() {
  if (!state.image || state.busy) return;
  showError("");
  const model = ui.model.value;
  const beam = ui.beam.value;
  setBusy(true, "Generating…");
  const form = new FormData();
  form.append("image", state.image.blob, state.image.name);
  form.append("model", model);
  if (beam) form.append("beam", beam);
  const started = performance.now();
  try {
    const r = await api("/api/caption", { method: "POST", body: form });
    const seconds = (performance.now() - started) / 1000;
    state.result = { caption: r.caption, concepts: r.concepts || [], model: r.model, beam: r.beam, seconds };
    ui.caption.classList.remove("busy");
    ui.caption.textContent = r.caption;
    showConcepts(r.concepts || []);
    ui.timing.textContent = `${seconds.toFixed(2)} s (model ${r.timing.inference_s.toFixed(2)} s) · ` +
                            `${r.model}, beam ${r.beam}`;
  } catch (err) {
    state.result = null;
    ui.caption.classList.remove("busy");
    ui.caption.textContent = "";
    showConcepts([]);
    showError("Could not caption the image: " + err.message);
  } finally {
    setBusy(false);
  }
}

async function save() {
  if (!state.image || !state.result || state.busy) return;
  showError("");
  const captionText = ui.caption.textContent;
  setBusy(true);
  const form = new FormData();
  form.append("image", state.image.blob, state.image.name);
  form.append("caption", state.result.caption);
  form.append("model", state.result.model);
  form.append("beam", String(state.result.beam));
  form.append("seconds", state.result.seconds.toFixed(3));
  form.append("concepts", JSON.stringify(state.result.concepts));
  if (state.image.sampleId) form.append("sample_id", state.image.sampleId);
  try {
    const r = await api("/api/save", { method: "POST", body: form });
    addSaved(r);
    ui.timing.textContent += " · saved";
  } catch (err) {
    showError("Could not save: " + err.message);
  } finally {
    ui.caption.textContent = captionText;
    setBusy(false);
  }
}

function addSaved(r) {
  const li = document.createElement("li");
  const quote = document.createElement("div");
  quote.textContent = `“${r.caption}”`;
  const files = document.createElement("div");
  files.className = "muted";
  for (const [i, name] of Object.values(r.files).entries()) {
    if (i) files.append(", ");
    const code = document.createElement("code");
    code.textContent = name;
    files.append(code);
  }
  li.append(quote, files);
  ui.savedList.prepend(li);
  ui.savedEmpty.hidden = true;
}

async function loadModels() {
  try {
    const [models, config] = await Promise.all([api("/api/models"), api("/api/config")]);
    state.models = models.models;
    state.maxUpload = config.max_upload_bytes;
    ui.outputDir.textContent = config.output_dir;
    ui.beam.max = String(models.max_beam);
    ui.model.replaceChildren(...models.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.label;
      option.selected = m.default;
      return option;
    }));
    modelChanged();
  } catch (err) {
    showError("Could not list the models: " + err.message);
  }
  setBusy(false);
}

// The beam box follows the chosen model: its own beam, and the widest the server allows it (at least its own).
function modelChanged() {
  const m = state.models.find((x) => x.name === ui.model.value);
  if (m) {
    ui.beam.max = String(m.max_beam);
    ui.beam.value = String(m.default_beam);
  }
  setBusy(false);
}

function wire() {
  ui.choose.addEventListener("click", () => ui.file.click());
  ui.drop.addEventListener("click", () => { if (!state.busy) ui.file.click(); });
  ui.drop.addEventListener("keydown", (e) => {
    if ((e.key === "Enter" || e.key === " ") && !state.busy) { e.preventDefault(); ui.file.click(); }
  });
  ui.file.addEventListener("change", () => { acceptFile(ui.file.files[0]); ui.file.value = ""; });
  ui.drop.addEventListener("dragover", (e) => { e.preventDefault(); ui.drop.classList.add("over"); });
  ui.drop.addEventListener("dragleave", () => ui.drop.classList.remove("over"));
  ui.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    ui.drop.classList.remove("over");
    if (!state.busy && e.dataTransfer && e.dataTransfer.files.length) acceptFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    if (state.busy || !e.clipboardData) return;
    const item = [...e.clipboardData.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { e.preventDefault(); acceptFile(item.getAsFile()); }
  });
  ui.sample.addEventListener("click", loadSample);
  ui.generate.addEventListener("click", generate);
  ui.save.addEventListener("click", save);
  ui.model.addEventListener("change", modelChanged);
}

wire();
loadModels();
