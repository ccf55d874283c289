// The page: picks files, shows one row per file, keeps the statistics panel fresh.
import { Api, Uploader } from "./upload.js";
import {
  Phase,
  advance,
  describe,
  formatBytes,
  isFinal,
  multipartThreshold,
  newRow,
  percent,
  progressText,
  resolveApiUrl,
} from "./logic.js";

const API_KEY = "onecopy.api";
const $ = (selector) => document.querySelector(selector);

// --- the API URL: ?api= wins and is remembered; else the remembered one; else this origin -------

function chooseApi() {
  const query = new URLSearchParams(location.search).get("api");
  const linked = query && resolveApiUrl({ query, stored: null, origin: location.origin });
  if (linked) localStorage.setItem(API_KEY, linked);
  const stored = localStorage.getItem(API_KEY);
  const remembered = resolveApiUrl({ query: null, stored, origin: location.origin });
  return linked || remembered || location.origin;
}

// Files above this size go in parts; `?multipart_threshold=<bytes>` lowers it (tests, flaky links).
const uploaderOptions = {
  multipartThreshold: multipartThreshold(
    new URLSearchParams(location.search).get("multipart_threshold"),
  ),
};

let api = new Api(chooseApi());
let uploader = new Uploader(api, uploaderOptions);

function showApi() {
  $("#api-current").textContent = api.baseUrl;
  $("#api-url").value = api.baseUrl === location.origin ? "" : api.baseUrl;
}

$("#settings-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#api-url");
  const typed = input.value.trim();
  const url = resolveApiUrl({ query: typed, stored: null, origin: location.origin });
  if (typed && !url) {
    input.setCustomValidity("Enter an http:// or https:// URL, or leave empty for this site.");
    input.reportValidity();
    return;
  }
  input.setCustomValidity("");
  if (typed) localStorage.setItem(API_KEY, url);
  else localStorage.removeItem(API_KEY);
  api = new Api(url);
  uploader = new Uploader(api, uploaderOptions);
  showApi();
  refreshStats();
});

// --- picking files -------------------------------------------------------------------------------

const zone = $("#drop-zone");
const input = $("#file-input");

zone.addEventListener("click", () => input.click());
zone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    input.click();
  }
});
zone.addEventListener("dragover", (event) => {
  event.preventDefault();
  zone.classList.add("dragging");
});
zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("dragging");
  start(event.dataTransfer.files);
});
input.addEventListener("change", () => {
  start(input.files);
  input.value = ""; // so picking the same file again fires change again
});

let active = 0;
window.addEventListener("beforeunload", (event) => {
  if (active > 0) event.preventDefault();
});

function start(files) {
  const rowApi = api; // a row keeps the API it started with, even if Settings change meanwhile
  for (const file of files) {
    const view = addRow(file);
    let row = newRow(file.name, file.size);
    active += 1;
    uploader
      .upload(file, (event) => {
        row = advance(row, event);
        render(view, row, rowApi);
        if (isFinal(row.phase)) refreshStats();
        return row;
      })
      .finally(() => {
        active -= 1;
      });
  }
}

// --- one row per file ----------------------------------------------------------------------------

function addRow(file) {
  const item = $("#row-template").content.firstElementChild.cloneNode(true);
  item.querySelector(".name").textContent = file.name;
  item.querySelector(".size").textContent = formatBytes(file.size);
  item.querySelector("progress").setAttribute("aria-label", `Upload progress of ${file.name}`);
  item.querySelector(".download").setAttribute("aria-label", `Download ${file.name}`);
  $("#uploads").append(item);
  $("#no-uploads").hidden = true;
  return item;
}

function render(item, row, rowApi) {
  item.dataset.phase = row.phase;
  const bar = item.querySelector("progress");
  const sending = row.phase === Phase.UPLOADING || row.phase === Phase.PROCESSING;
  bar.hidden = !sending;
  bar.value = percent(row.loaded, row.size);
  item.querySelector(".bytes").textContent = sending ? progressText(row) : "";
  const status = item.querySelector(".status");
  const text = describe(row);
  if (status.textContent !== text) status.textContent = text; // unchanged text is not re-announced
  const held = row.phase === Phase.STORED || row.phase === Phase.DUPLICATE;
  if (held && row.sha256) {
    item.querySelector(".sha256 code").textContent = row.sha256;
    item.querySelector(".sha256").hidden = false;
  }
  if (held && row.uploadId) {
    const link = item.querySelector(".download");
    link.href = rowApi.downloadLink(row.uploadId);
    link.hidden = false;
  }
}

// --- statistics ----------------------------------------------------------------------------------

const STATS = {
  total_files: "#stat-files",
  total_uploads: "#stat-uploads",
  duplicates_avoided: "#stat-duplicates",
  total_s3_size_saved: "#stat-saved",
  total_bytes_stored: "#stat-stored",
};
const BYTE_STATS = new Set(["total_s3_size_saved", "total_bytes_stored"]);
let statsRequest = 0;

async function refreshStats() {
  // Responses can arrive out of order; only the latest request may paint.
  const mine = ++statsRequest;
  const problem = $("#stats-error");
  try {
    const stats = await api.stats();
    if (mine !== statsRequest) return;
    for (const [field, selector] of Object.entries(STATS)) {
      const cell = $(selector);
      const value = stats[field];
      cell.value = String(value);
      if (BYTE_STATS.has(field)) {
        cell.textContent = formatBytes(value);
        cell.title = `${value.toLocaleString()} bytes`;
      } else {
        cell.textContent = value.toLocaleString();
      }
    }
    problem.hidden = true;
  } catch (error) {
    if (mine !== statsRequest) return;
    problem.textContent = `Statistics unavailable: ${error.message}`;
    problem.hidden = false;
  }
}

showApi();
refreshStats();
