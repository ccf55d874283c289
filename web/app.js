// The page: signs in, picks files, shows one row per file, and (for admins) the statistics and the
// stored contents.
import { Api, Cognito, SignedOut, Uploader } from "./upload.js";
import {
  Phase,
  advance,
  describe,
  formatBytes,
  isAdmin,
  isFinal,
  multipartThreshold,
  newRow,
  percent,
  progressText,
  refreshAt,
  refreshDelay,
  resolveApiUrl,
  sessionFrom,
  usableSession,
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
  if (isAdmin(session)) {
    refreshStats();
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
  $("#hashes tbody").replaceChildren();
  $("#hashes-status").textContent = "";
  $("#hashes-more").hidden = true;
  hashesAfter = null;
  hashesPages = 0;
  for (const selector of Object.values(STATS)) $(selector).textContent = "–";
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
        if (isFinal(row.phase) && isAdmin(session)) refreshAdmin();
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
    button.addEventListener("click", () => download(button, status, rowApi, row.uploadId));
  }
}

/** The API hands out a short-lived storage URL (asked for with the token, which a plain link
 * cannot send); the browser saves what it serves, as an attachment, without leaving the page. */
async function download(button, status, rowApi, uploadId) {
  button.disabled = true;
  try {
    location.assign(await rowApi.downloadUrl(uploadId));
  } catch (error) {
    if (!(error instanceof SignedOut)) status.textContent = `Download failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

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
