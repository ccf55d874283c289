// The page: signs in, picks files, shows one row per file, lists (and deletes) the caller's files,
// and for admins the statistics, the service's health and the stored contents.
import { Api, Cognito, SignedOut, Uploader } from "./upload.js";
import {
  Phase,
  advance,
  afterDelete,
  deletePrompt,
  describe,
  fileRow,
  formatBytes,
  healthView,
  isAdmin,
  isFinal,
  listFilter,
  listingSummary,
  multipartThreshold,
  newListing,
  newRow,
  nextQuery,
  percent,
  progressText,
  refreshAt,
  refreshDelay,
  resolveApiUrl,
  sessionFrom,
  usableSession,
  wantsAnotherPage,
  withPage,
  withUpload,
  withoutUpload,
} from "./logic.js";

const API_KEY = "onecopy.api";
// Tokens live in sessionStorage at most (gone with the tab), never in localStorage.
const SESSION_KEY = "onecopy.session";
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

const newApi = (url) => new Api(url, { token: freshToken, onSignedOut: signOut });
let api = newApi(chooseApi());
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
  // Another API has its own users: its tokens are not this one's.
  signOut();
  api = newApi(url);
  showApi();
  startUp();
});

// --- signing in ----------------------------------------------------------------------------------

let cognito = null; // from the API's GET /auth/config
let session = null; // {idToken, accessToken, refreshToken, issuedAt, expiresAt, username, groups}
let refreshTimer = 0;
let refreshing = null; // the refresh in flight, shared by every caller waiting for a token

/** The IdToken to send, refreshed first if it is about to expire (a background tab's timers run
 * late, so the timer alone cannot be trusted); null when signed out. */
async function freshToken() {
  if (session && Date.now() >= refreshAt(session)) await refreshSession();
  return session?.idToken ?? null;
}

function refreshSession() {
  const current = session;
  refreshing ??= (async () => {
    try {
      const result = await cognito.refresh(current.refreshToken);
      if (session === current) keep(sessionFrom(result, Date.now(), current.refreshToken));
    } catch (error) {
      if (session !== current) return; // signed out (or in again) meanwhile
      if (error.status === 0 && Date.now() < current.expiresAt) {
        scheduleRefresh(10_000); // unreachable for now, and the tokens still work: try again soon
      } else {
        signOut(`Your session could not be renewed. ${error.message}`);
      }
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

function scheduleRefresh(delay) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshSession, delay);
}

function keep(next) {
  session = next;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({ ...session, api: api.baseUrl }));
  scheduleRefresh(refreshDelay(session, Date.now()));
}

function storedSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
    return usableSession(stored, Date.now()) && stored.api === api.baseUrl ? stored : null;
  } catch {
    return null; // not JSON: someone else's value under our key; sign in afresh
  }
}

/** Reads where to sign in; resumes this tab's session if it has one. */
async function startUp() {
  cognito = null;
  try {
    const config = await api.authConfig();
    if (!config.cognito_endpoint || !config.client_id) {
      showSignIn(
        "This API signs in with an identity provider this page does not support. " +
          "Use the command-line client with ONECOPY_TOKEN.",
      );
      return;
    }
    cognito = new Cognito(config.cognito_endpoint, config.client_id);
  } catch (error) {
    showSignIn(error.message);
    return;
  }
  const stored = storedSession();
  if (!stored) {
    showSignIn("");
    return;
  }
  session = stored;
  if (Date.now() >= refreshAt(session)) await refreshSession();
  else scheduleRefresh(refreshDelay(session, Date.now()));
  if (session) enter();
}

$("#sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#sign-in-button");
  const message = $("#sign-in-message");
  button.disabled = true;
  message.textContent = "";
  try {
    if (!cognito) await startUp(); // the API was unreachable when the page loaded
    if (!cognito) return;
    const result = await cognito.signIn($("#username").value.trim(), $("#password").value);
    keep(sessionFrom(result, Date.now()));
    $("#password").value = "";
    enter({ focus: true });
  } catch (error) {
    message.textContent = error.message;
  } finally {
    button.disabled = false;
  }
});

$("#sign-out").addEventListener("click", () => signOut());

function showSignIn(message) {
  $("#account").hidden = true;
  $("#workspace").hidden = true;
  $("#admin").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-in-message").textContent = message;
}

function enter({ focus = false } = {}) {
  uploader = new Uploader(api, uploaderOptions);
  $("#account-name").textContent = session.username;
  $("#account-role").textContent = isAdmin(session) ? " (administrator)" : "";
  $("#sign-in").hidden = true;
  $("#account").hidden = false;
  $("#workspace").hidden = false;
  $("#admin").hidden = !isAdmin(session);
  if (focus) $("#drop-zone").focus(); // the next thing to use, after the form that just went
  loadFiles();
  if (isAdmin(session)) {
    refreshStats();
    refreshHealth();
    loadHashes();
  }
}

/** Forgets the tokens and everything shown for them, and asks for a sign-in (saying why). */
function signOut(message = "") {
  const wasSignedIn = session !== null;
  clearTimeout(refreshTimer);
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  $("#uploads").replaceChildren();
  $("#no-uploads").hidden = false;
  forgetFiles();
  $("#hashes tbody").replaceChildren();
  $("#hashes-status").textContent = "";
  $("#hashes-more").hidden = true;
  hashesAfter = null;
  hashesPages = 0;
  for (const selector of Object.values(STATS)) $(selector).textContent = "–";
  forgetHealth();
  showSignIn(message);
  if (wasSignedIn) $("#username").focus();
}

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
        if (isFinal(row.phase)) {
          if (row.uploadId) showInFiles(rowApi, row.uploadId);
          if (isAdmin(session)) refreshAdmin();
        }
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
  const button = item.querySelector(".download");
  if (held && row.uploadId && button.hidden) {
    button.hidden = false;
    button.addEventListener("click", () =>
      download(button, rowApi, row.uploadId, (message) => {
        status.textContent = message;
      }),
    );
  }
}

/** The API hands out a short-lived storage URL (asked for with the token, which a plain link
 * cannot send); the browser saves what it serves, as an attachment, without leaving the page. */
async function download(button, rowApi, uploadId, onError) {
  button.disabled = true;
  try {
    location.assign(await rowApi.downloadUrl(uploadId));
  } catch (error) {
    if (!(error instanceof SignedOut)) onError(`Download failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- your files: the caller's uploads, newest first, page by page; delete ------------------------

let listing = newListing();
let listRequest = 0; // pages can arrive out of order: only the latest request may paint
let account = 0; // bumped on sign-out: answers for the previous account are dropped
let filesLoading = false;
let filesNote = ""; // what the last delete did, said before the count
const fileRows = new Map(); // upload_id -> its <tr>, kept across repaints (and with it, focus)
const deleteDialog = $("#delete-dialog");

function currentFilter() {
  return listFilter({ status: $("#filter-status").value, prefix: $("#filter-prefix").value });
}

/** The list from its first page (`more`: the next pages). One load asks for a few pages at once
 * when they come back short, so a sparse filter still fills the list. */
async function loadFiles({ more = false } = {}) {
  const mine = ++listRequest;
  const moreButton = $("#files-more");
  if (!more) {
    listing = newListing(currentFilter());
    filesNote = "";
  }
  showFilesError("");
  filesLoading = true;
  paintFiles();
  moreButton.disabled = true;
  try {
    let added = 0;
    for (let calls = 1; ; calls += 1) {
      const page = await api.listUploads(nextQuery(listing));
      if (mine !== listRequest) return;
      listing = withPage(listing, page);
      added += page.items?.length ?? 0;
      paintFiles();
      if (!wantsAnotherPage(listing, { added, calls })) break;
    }
  } catch (error) {
    if (mine !== listRequest || error instanceof SignedOut) return;
    showFilesError(`Your files could not be loaded: ${error.message}`);
  } finally {
    if (mine === listRequest) {
      filesLoading = false;
      moreButton.disabled = false;
      paintFiles();
    }
  }
}

/** A file this tab finished uploading joins the list (if the filter lets it), without reloading. */
async function showInFiles(rowApi, uploadId) {
  const mine = account;
  let view;
  try {
    view = await rowApi.findUpload(uploadId);
  } catch {
    return; // the row above says how the upload went; the list shows it on its next load
  }
  if (mine !== account || rowApi !== api) return;
  listing = view ? withUpload(listing, view) : withoutUpload(listing, uploadId);
  paintFiles();
}

/** Brings the table in line with the listing, reusing each upload's row so focus stays put. */
function paintFiles() {
  const body = $("#files tbody");
  const ids = new Set(listing.items.map((view) => view.upload_id));
  for (const [id, tr] of fileRows) {
    if (!ids.has(id)) {
      tr.remove();
      fileRows.delete(id);
    }
  }
  let previous = null;
  for (const view of listing.items) {
    let tr = fileRows.get(view.upload_id);
    if (!tr) {
      tr = newFileRow(view.upload_id);
      fileRows.set(view.upload_id, tr);
    }
    fillFileRow(tr, fileRow(view));
    const expected = previous ? previous.nextElementSibling : body.firstElementChild;
    if (expected !== tr) {
      if (previous) previous.after(tr);
      else body.prepend(tr);
    }
    previous = tr;
  }
  const summary = listingSummary(listing, { loading: filesLoading });
  const text = filesNote ? `${filesNote} ${summary}` : summary;
  const status = $("#files-status");
  if (status.textContent !== text) status.textContent = text;
  $("#files-more").hidden = !listing.loaded || listing.next === null;
}

function newFileRow(uploadId) {
  const tr = $("#file-template").content.firstElementChild.cloneNode(true);
  const downloadButton = tr.querySelector(".download");
  downloadButton.addEventListener("click", () =>
    download(downloadButton, api, uploadId, (message) => showFilesError(message)),
  );
  const deleteButton = tr.querySelector(".delete");
  deleteButton.addEventListener("click", () => deleteFile(uploadId, deleteButton));
  return tr;
}

function fillFileRow(tr, row) {
  tr.dataset.status = row.status;
  tr.querySelector(".name").textContent = row.name;
  const size = tr.querySelector(".size");
  size.textContent = row.size;
  size.title = row.bytes;
  tr.querySelector(".file-status").textContent = row.statusText;
  const time = tr.querySelector("time");
  time.dateTime = row.createdIso;
  time.textContent = row.created;
  const downloadButton = tr.querySelector(".download");
  downloadButton.hidden = !row.downloadable;
  downloadButton.setAttribute("aria-label", `Download ${row.name}`);
  tr.querySelector(".delete").setAttribute("aria-label", `Delete ${row.name}`);
}

function showFilesError(message) {
  const problem = $("#files-error");
  problem.textContent = message;
  problem.hidden = !message;
}

/** Asks first (a modal dialog, the safe choice focused); resolves true when confirmed. */
function confirmDelete(view) {
  const prompt = deletePrompt(view);
  $("#delete-title").textContent = prompt.title;
  $("#delete-text").textContent = prompt.text;
  $("#delete-confirm").textContent = prompt.confirm;
  deleteDialog.returnValue = "";
  deleteDialog.showModal();
  return new Promise((resolve) => {
    deleteDialog.addEventListener("close", () => resolve(deleteDialog.returnValue === "confirm"), {
      once: true,
    });
  });
}

$("#delete-confirm").addEventListener("click", () => deleteDialog.close("confirm"));
$("#delete-keep").addEventListener("click", () => deleteDialog.close("keep"));

async function deleteFile(uploadId, button) {
  const view = listing.items.find((item) => item.upload_id === uploadId);
  if (!view || !(await confirmDelete(view))) return;
  const mine = account;
  const rowApi = api;
  button.disabled = true;
  let result;
  try {
    const answer = await rowApi.deleteUpload(uploadId);
    result = afterDelete(view, answer.status, answer.message);
    if (result.outcome === "recheck") {
      const fresh = await rowApi.findUpload(uploadId);
      result = { ...result, outcome: fresh ? "replace" : "remove", view: fresh };
    }
  } catch (error) {
    if (error instanceof SignedOut) return;
    result = {
      outcome: "keep",
      note: `Could not delete ${view.filename}: ${error.message}`,
      error: true,
    };
  } finally {
    button.disabled = false;
  }
  if (mine !== account) return;
  const neighbour = neighbourOf(uploadId);
  if (result.outcome === "remove") listing = withoutUpload(listing, uploadId);
  if (result.outcome === "replace") listing = withUpload(listing, result.view);
  filesNote = result.error ? "" : result.note;
  showFilesError(result.error ? result.note : "");
  paintFiles();
  // The row's own button if the row stayed; else a neighbour's, so the keyboard keeps its place.
  const focus = [button, neighbour].find((element) => element?.isConnected);
  (focus ?? $("#filter-status")).focus();
}

/** Where the focus goes when a row goes: the next row's Delete button, else the previous one's. */
function neighbourOf(uploadId) {
  const tr = fileRows.get(uploadId);
  const next = tr?.nextElementSibling ?? tr?.previousElementSibling;
  return next?.querySelector(".delete") ?? null;
}

/** Signing out: nothing of this account's list stays on the page. */
function forgetFiles() {
  account += 1;
  listRequest += 1;
  if (deleteDialog.open) deleteDialog.close();
  listing = newListing();
  filesNote = "";
  filesLoading = false;
  fileRows.clear();
  $("#files tbody").replaceChildren();
  $("#files-status").textContent = "";
  $("#files-more").hidden = true;
  showFilesError("");
  $("#files-filter").reset();
}

let filterTimer = 0;
$("#files-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(filterTimer);
  loadFiles();
});
$("#filter-status").addEventListener("change", () => {
  clearTimeout(filterTimer);
  loadFiles();
});
// Typing asks the API once the typing pauses, not at every key.
$("#filter-prefix").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(loadFiles, 300);
});
$("#files-reload").addEventListener("click", () => loadFiles());
$("#files-more").addEventListener("click", () => loadFiles({ more: true }));

// --- administration: statistics and stored contents ----------------------------------------------

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
    if (mine !== statsRequest || error instanceof SignedOut) return;
    problem.textContent = `Statistics unavailable: ${error.message}`;
    problem.hidden = false;
  }
}

// The health view: what needs attention first, then the queues and the background jobs.
const HEALTH = {
  waiting: "#health-waiting",
  inFlight: "#health-in-flight",
  oldest: "#health-oldest",
  deadLetters: "#health-dead-letters",
  reconciliation: "#health-reconciliation",
  backlog: "#health-backlog",
  collection: "#health-collection",
};
let healthRequest = 0;

async function refreshHealth() {
  const mine = ++healthRequest;
  const section = $("#health");
  const problem = $("#health-error");
  section.setAttribute("aria-busy", "true");
  if (!section.dataset.ok) $("#health-summary").textContent = "Loading…";
  try {
    const health = await api.health();
    if (mine !== healthRequest) return;
    showHealth(healthView(health));
    problem.hidden = true;
  } catch (error) {
    if (mine !== healthRequest || error instanceof SignedOut) return;
    if (!section.dataset.ok) $("#health-summary").textContent = "";
    problem.textContent = `Health unavailable: ${error.message}`;
    problem.hidden = false;
  } finally {
    if (mine === healthRequest) section.removeAttribute("aria-busy");
  }
}

function showHealth(view) {
  $("#health").dataset.ok = String(view.ok);
  const summary = $("#health-summary");
  if (summary.textContent !== view.summary) summary.textContent = view.summary;
  const list = $("#health-attention");
  list.replaceChildren(
    ...view.attention.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }),
  );
  list.hidden = view.attention.length === 0;
  for (const [name, selector] of Object.entries(HEALTH)) {
    const { text, when, alert } = view.fields[name];
    const cell = $(selector);
    cell.replaceChildren(text);
    if (when) {
      const time = document.createElement("time");
      time.dateTime = when.iso;
      time.title = when.exact;
      time.textContent = when.ago;
      cell.append(", ", time);
    }
    cell.classList.toggle("alert", alert);
  }
  $("#health-checked").textContent = `Checked ${new Date().toLocaleString()}.`;
}

/** Signing out: an answer still on its way is dropped, and nothing of the last one stays. */
function forgetHealth() {
  healthRequest += 1;
  const section = $("#health");
  delete section.dataset.ok;
  section.removeAttribute("aria-busy");
  $("#health-summary").textContent = "";
  $("#health-attention").replaceChildren();
  $("#health-attention").hidden = true;
  for (const selector of Object.values(HEALTH)) {
    $(selector).textContent = "–";
    $(selector).classList.remove("alert");
  }
  $("#health-checked").textContent = "";
  $("#health-error").hidden = true;
}

$("#health-refresh").addEventListener("click", () => refreshHealth());

let hashesRequest = 0;
let hashesAfter = null; // the next page's token
let hashesPages = 0;

/** After an upload: the counters, and the list too unless the admin is paging through it. */
function refreshAdmin() {
  refreshStats();
  if (hashesPages <= 1) loadHashes();
}

async function loadHashes({ more = false } = {}) {
  const mine = ++hashesRequest;
  const body = $("#hashes tbody");
  const status = $("#hashes-status");
  status.textContent = "Loading…";
  try {
    const page = await api.hashes(more ? hashesAfter : null);
    if (mine !== hashesRequest) return;
    if (!more) body.replaceChildren();
    for (const item of page.items) body.append(hashRow(item));
    hashesAfter = page.last_evaluated_key;
    hashesPages = more ? hashesPages + 1 : 1;
    $("#hashes-more").hidden = !hashesAfter;
    const shown = body.rows.length;
    status.textContent =
      shown === 0
        ? "No contents stored yet."
        : `${shown.toLocaleString()} ${shown === 1 ? "content" : "contents"} shown${
            hashesAfter ? "; more are stored" : ""
          }.`;
  } catch (error) {
    if (mine !== hashesRequest || error instanceof SignedOut) return;
    status.textContent = `Stored contents unavailable: ${error.message}`;
  }
}

function hashRow(item) {
  const row = document.createElement("tr");
  const cells = [
    item.sha256,
    formatBytes(item.size),
    item.upload_count.toLocaleString(),
    new Date(item.created_at).toLocaleString(),
  ];
  for (const [index, text] of cells.entries()) {
    const cell = document.createElement(index === 0 ? "th" : "td");
    if (index === 0) cell.scope = "row";
    const content = index === 0 ? document.createElement("code") : cell;
    content.textContent = text;
    if (index === 0) cell.append(content);
    row.append(cell);
  }
  return row;
}

$("#hashes-reload").addEventListener("click", () => {
  refreshStats();
  loadHashes();
});
$("#hashes-more").addEventListener("click", () => loadHashes({ more: true }));

showApi();
startUp();
