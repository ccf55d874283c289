// Pure logic of the upload page: no DOM, no network. Unit-tested in tests/browser/test_logic.py.

/** Files above this size skip the browser hash (WebCrypto digests whole buffers, not streams):
 * they are uploaded without a sha256 and the server hashes them. */
export const CLIENT_HASH_LIMIT = 256 * 1024 * 1024;

export function toHex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 -> "1.5 KiB"; exact bytes below 1 KiB. */
export function formatBytes(bytes) {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  if (unit === 0) return `${bytes} B`;
  return `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

export function percent(loaded, total) {
  if (total <= 0) return 100;
  return Math.min(100, Math.floor((loaded / total) * 100));
}

export function shouldHash(size, hasWebCrypto = true) {
  return hasWebCrypto && size <= CLIENT_HASH_LIMIT;
}

/** The API base URL: `?api=` wins (and should be remembered), then the remembered one, else the
 * page's own origin. Returns null for a value that is not an http(s) URL. */
export function resolveApiUrl({ query, stored, origin }) {
  const chosen = query || stored || origin;
  let url;
  try {
    url = new URL(chosen);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  return url.href.replace(/\/+$/, "");
}

// Browsers set these themselves and refuse to let scripts set them.
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection", "expect"]);

/** The presigned PUT's headers a script may (and must) send. */
export function sendableHeaders(headers) {
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => !FORBIDDEN_HEADERS.has(name.toLowerCase())),
  );
}

/** Milliseconds to wait before status poll number `attempt` (0-based): 250 ms doubling to 4 s. */
export function pollDelay(attempt) {
  return Math.min(250 * 2 ** attempt, 4000);
}

// --- uploads in parts ----------------------------------------------------------------------------

/** Files above this size are sent in parts (the API's own default threshold). */
export const MULTIPART_THRESHOLD = 100 * 1024 * 1024;

/** The page's multipart threshold: `?multipart_threshold=<bytes>` (a whole number >= 0) when
 * given, else MULTIPART_THRESHOLD. Lets a test (or a person on a flaky link) use parts for small
 * files. */
export function multipartThreshold(query) {
  if (query === null || query === undefined || !/^\d+$/.test(String(query).trim())) {
    return MULTIPART_THRESHOLD;
  }
  return Number(String(query).trim());
}

export function wantsMultipart(size, threshold = MULTIPART_THRESHOLD) {
  return size > threshold;
}

/** The byte range of every part, as the API planned them: each part_size bytes, the last the
 * rest. The sizes must be exact: each part URL signs its Content-Length. */
export function planParts(size, partSize, partCount) {
  if (!(partSize > 0) || !(partCount > 0) || Math.ceil(size / partSize) !== partCount) {
    throw new Error(`${partCount} parts of ${partSize} bytes cannot hold ${size} bytes`);
  }
  return Array.from({ length: partCount }, (_, index) => {
    const start = index * partSize;
    const end = Math.min(start + partSize, size);
    return { partNumber: index + 1, start, end, size: end - start };
  });
}

/** [1..250] -> [[1..100], [101..200], [201..250]]: the API presigns at most 100 parts a call. */
export function batches(items, size = 100) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Bytes sent so far over all parts: finished parts in full, in-flight ones as far as they got.
 * A part that fails starts again from 0, so the total can go down. */
export class PartProgress {
  #sizes = new Map();
  #loaded = new Map();

  constructor(parts) {
    for (const part of parts) {
      this.#sizes.set(part.partNumber, part.size);
      this.#loaded.set(part.partNumber, 0);
    }
  }

  /** Records how far one part got; returns the new total. */
  update(partNumber, loaded) {
    const size = this.#sizes.get(partNumber);
    if (size === undefined) throw new Error(`no part ${partNumber}`);
    this.#loaded.set(partNumber, Math.max(0, Math.min(loaded, size)));
    return this.total;
  }

  finish(partNumber) {
    return this.update(partNumber, this.#sizes.get(partNumber) ?? 0);
  }

  restart(partNumber) {
    return this.update(partNumber, 0);
  }

  get total() {
    let sum = 0;
    for (const loaded of this.#loaded.values()) sum += loaded;
    return sum;
  }
}

export const PART_ATTEMPTS = 3;

/** Milliseconds before retry number `retry` (1-based) of a part: 500 ms, then 1 s, 2 s, ... */
export function partRetryDelay(retry) {
  return 500 * 2 ** (retry - 1);
}

/** What to do after a part's PUT failed with `status` (0: no HTTP answer) on attempt `attempt`
 * (1-based): "retry" with the same URL, "refresh" its URL then retry (403: the URL expired, or its
 * signature went stale), or "give-up". */
export function afterPartFailure(status, attempt, attempts = PART_ATTEMPTS) {
  const transient = status === 0 || status === 408 || status === 429 || status >= 500;
  if (attempt >= attempts || !(transient || status === 403)) return "give-up";
  return status === 403 ? "refresh" : "retry";
}

// --- errors --------------------------------------------------------------------------------------

const XML_ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function xmlText(xml, tag) {
  const match = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return match ? match[1].replace(/&(amp|lt|gt|quot|apos);/g, (_, e) => XML_ENTITIES[e]) : null;
}

/** `<Error><Code>BadDigest</Code><Message>...</Message></Error>` -> {code, message}, or null. */
export function parseS3Error(xml) {
  if (typeof xml !== "string" || !xml.includes("<Error>")) return null;
  const code = xmlText(xml, "Code");
  return code ? { code, message: xmlText(xml, "Message") ?? "" } : null;
}

/** An error a person can act on. `rejected` marks bytes the storage refused as wrong. */
export class UploadError extends Error {
  constructor(message, { rejected = false } = {}) {
    super(message);
    this.name = "UploadError";
    this.rejected = rejected;
  }
}

/** The storage service's answer to a failed PUT, explained. status 0 means no HTTP answer. */
export function explainPutFailure(status, body) {
  if (status === 0) {
    return new UploadError(
      "Could not reach the storage service (network failure, or it refused this site by CORS). " +
        "Check your connection and try again.",
    );
  }
  const error = parseS3Error(body);
  const code = error?.code ?? `HTTP ${status}`;
  switch (code) {
    case "BadDigest":
      return new UploadError(
        "The bytes that arrived do not match the file's SHA-256. " +
          "The file may have changed while uploading: pick it again.",
        { rejected: true },
      );
    case "AccessDenied":
      if (/expired/i.test(error.message)) {
        return new UploadError("The upload link expired before the upload began. Try again.");
      }
      return new UploadError(`The storage service denied the upload: ${error.message}`);
    case "SignatureDoesNotMatch":
      return new UploadError(
        "The storage service refused the upload signature. Check that this computer's clock is " +
          "right, then try again.",
      );
    case "PreconditionFailed":
      return new UploadError("This upload link was already used. Try the file again.");
    default:
      return new UploadError(`The storage service refused the upload (${code}). Try again.`);
  }
}

export const REJECT_REASONS = {
  size_mismatch: "the bytes received are not the size that was declared",
  checksum_mismatch: "the bytes received do not match the declared SHA-256",
  aborted: "the upload was cancelled",
};

// --- the per-file state machine ------------------------------------------------------------------

export const Phase = Object.freeze({
  QUEUED: "queued",
  HASHING: "hashing",
  CREATING: "creating",
  UPLOADING: "uploading",
  PROCESSING: "processing",
  STORED: "stored",
  DUPLICATE: "duplicate",
  REJECTED: "rejected",
  FAILED: "failed",
});

const FINAL = new Set([Phase.STORED, Phase.DUPLICATE, Phase.REJECTED, Phase.FAILED]);

// Which events each phase accepts; anything else is a bug in the caller.
const ACCEPTS = {
  queued: ["hashing", "creating", "failed"],
  hashing: ["hashed", "failed"],
  creating: ["created", "held", "failed"],
  uploading: ["progress", "sent", "failed"],
  processing: ["status", "failed"],
};

export function isFinal(phase) {
  return FINAL.has(phase);
}

/** A new row for a picked file. */
export function newRow(name, size) {
  return { phase: Phase.QUEUED, name, size, loaded: 0, sha256: null, uploadId: null, note: "" };
}

/**
 * The row after one event. Events:
 * {type:"hashing"} {type:"hashed", sha256} {type:"creating"} {type:"created", uploadId}
 * {type:"held", uploadId} {type:"progress", loaded} {type:"sent"}
 * {type:"status", body: GET /uploads/{id}} {type:"failed", error: UploadError|Error}
 */
export function advance(row, event) {
  if (!(ACCEPTS[row.phase] ?? []).includes(event.type)) {
    throw new Error(`a ${row.phase} upload cannot take "${event.type}"`);
  }
  switch (event.type) {
    case "hashing":
      return { ...row, phase: Phase.HASHING };
    case "hashed":
      return { ...row, phase: Phase.CREATING, sha256: event.sha256 };
    case "creating":
      return { ...row, phase: Phase.CREATING };
    case "created":
      return { ...row, phase: Phase.UPLOADING, uploadId: event.uploadId };
    case "held":
      return { ...row, phase: Phase.DUPLICATE, uploadId: event.uploadId, note: "nothing uploaded" };
    case "progress":
      return { ...row, loaded: Math.min(event.loaded, row.size) };
    case "sent":
      return { ...row, phase: Phase.PROCESSING, loaded: row.size };
    case "status":
      return afterStatus(row, event.body);
    case "failed":
      return {
        ...row,
        phase: event.error.rejected ? Phase.REJECTED : Phase.FAILED,
        note: event.error.message,
      };
  }
}

function afterStatus(row, body) {
  switch (body.status) {
    case "PENDING":
      return row;
    case "STORED":
      return { ...row, phase: Phase.STORED, sha256: body.sha256 ?? row.sha256 };
    case "DUPLICATE":
      return { ...row, phase: Phase.DUPLICATE, sha256: body.sha256 ?? row.sha256 };
    case "REJECTED":
      return {
        ...row,
        phase: Phase.REJECTED,
        note: REJECT_REASONS[body.reason] ?? body.reason ?? "no reason given",
      };
    default:
      throw new Error(`unknown upload status ${body.status}`);
  }
}

/** "1.5 KiB of 3.0 KiB (50%)" */
export function progressText({ loaded, size }) {
  return `${formatBytes(loaded)} of ${formatBytes(size)} (${percent(loaded, size)}%)`;
}

/** The row's status line, as a person reads it (and a screen reader announces it). */
export function describe(row) {
  switch (row.phase) {
    case Phase.QUEUED:
      return "Waiting";
    case Phase.HASHING:
      return "Computing SHA-256…";
    case Phase.CREATING:
      return "Starting upload…";
    case Phase.UPLOADING:
      return "Uploading…"; // the numbers change often: they go next to the bar, not in here
    case Phase.PROCESSING:
      return "Uploaded; checking for duplicates…";
    case Phase.STORED:
      return "Stored";
    case Phase.DUPLICATE:
      return row.note
        ? `Duplicate: already stored, ${row.note} (${formatBytes(row.size)} saved)`
        : `Duplicate: ${formatBytes(row.size)} saved`;
    case Phase.REJECTED:
      return `Rejected: ${row.note}`;
    case Phase.FAILED:
      return `Failed: ${row.note}`;
  }
}

// --- signing in ----------------------------------------------------------------------------------

/** A JWT's claims, read without checking the signature: the page only uses them to decide what to
 * show (name, admin panel). The API's authorizer verifies every token it is sent. */
export function jwtClaims(token) {
  const part = String(token).split(".")[1];
  if (!part) throw new Error("not a JWT");
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")), (c) =>
    c.charCodeAt(0),
  );
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** cognito:groups as a list: a JSON array in a token, or the "[admins other]" string API Gateway
 * makes of it. */
export function groupsOf(claims) {
  const groups = claims?.["cognito:groups"];
  if (Array.isArray(groups)) return groups.map(String);
  if (typeof groups !== "string") return [];
  return groups
    .replace(/^\[|\]$/g, "")
    .split(/[\s,]+/)
    .filter(Boolean);
}

/** The signed-in session from Cognito's AuthenticationResult. A refresh answers without a
 * RefreshToken: the one it was made with is kept. */
export function sessionFrom(result, now, refreshToken = null) {
  const claims = jwtClaims(result.IdToken);
  return {
    idToken: result.IdToken,
    accessToken: result.AccessToken,
    refreshToken: result.RefreshToken ?? refreshToken,
    issuedAt: now,
    // From ExpiresIn, not the token's exp: that is Cognito's clock, and this one may be off.
    expiresAt: now + Number(result.ExpiresIn) * 1000,
    username: claims["cognito:username"] ?? claims.username ?? claims.email ?? claims.sub,
    groups: groupsOf(claims),
  };
}

/** A session's tokens are refreshed a minute before they expire, or after four fifths of their
 * life when that is shorter, so an API call never carries a token about to expire. */
export function refreshAt({ issuedAt, expiresAt }) {
  return expiresAt - Math.min(60_000, (expiresAt - issuedAt) / 5);
}

/** Milliseconds from `now` until the session should be refreshed (0: now). */
export function refreshDelay(session, now) {
  return Math.max(0, refreshAt(session) - now);
}

/** A stored session that can still be used: unexpired tokens, or a refresh token for new ones. */
export function usableSession(session, now) {
  if (!session || typeof session !== "object" || typeof session.idToken !== "string") return false;
  return session.expiresAt > now || typeof session.refreshToken === "string";
}

export function isAdmin(session) {
  return Boolean(session?.groups?.includes("admins"));
}

/** Cognito's error answer (`{"__type": "...", "message": "..."}`) as a sentence to act on. */
export function explainSignInFailure(status, body) {
  const type = String(body?.__type ?? "").split("#").pop();
  switch (type) {
    case "NotAuthorizedException":
    case "UserNotFoundException":
      return /refresh token/i.test(body?.message ?? "")
        ? "Sign in again."
        : "Wrong username or password.";
    case "PasswordResetRequiredException":
      return "This account's password must be reset first: ask an administrator.";
    case "UserNotConfirmedException":
      return "This account is not confirmed yet: ask an administrator.";
    case "TooManyRequestsException":
    case "LimitExceededException":
      return "Too many sign-in attempts. Wait a minute, then try again.";
    default: {
      if (status === 0) {
        return (
          "Could not reach the sign-in service (network failure, or it refused this site by " +
          "CORS). Check your connection and try again."
        );
      }
      const detail = body?.message ? `: ${body.message}` : "";
      return `Sign-in failed (${type || `HTTP ${status}`}${detail}).`;
    }
  }
}

// --- your files: GET /uploads, page by page, and DELETE /uploads/{id} ----------------------------

/** The statuses GET /uploads can filter on, in the order the filter offers them. */
export const UPLOAD_STATUSES = ["STORED", "DUPLICATE", "PENDING", "REJECTED"];

/** Items asked for per GET /uploads (the API allows 1..1000). */
export const LIST_PAGE_SIZE = 50;

/** GET /uploads calls one "Load more" makes at most while its pages come back short. */
export const LIST_CALLS_PER_LOAD = 5;

const STATUS_LABELS = {
  STORED: "Stored",
  DUPLICATE: "Duplicate",
  PENDING: "Pending",
  REJECTED: "Rejected",
};

/** The filter as the list uses it: a known status or "" (all), and a name prefix ("" for any). */
export function listFilter({ status = "", prefix = "" } = {}) {
  return {
    status: UPLOAD_STATUSES.includes(status) ? status : "",
    prefix: typeof prefix === "string" ? prefix : "",
  };
}

/** The query string of GET /uploads; empty values are left out. */
export function uploadsQuery({ limit = LIST_PAGE_SIZE, status = "", prefix = "", after = null }) {
  const filter = listFilter({ status, prefix });
  const query = new URLSearchParams({ limit: String(limit) });
  if (filter.status) query.set("status", filter.status);
  if (filter.prefix) query.set("prefix", filter.prefix);
  if (after) query.set("last_evaluated_key", after);
  return query.toString();
}

/** A list not loaded yet: no items, and a first page to ask for. */
export function newListing(filter = {}) {
  return { filter: listFilter(filter), items: [], next: null, loaded: false };
}

/** The listing's next request's query string. */
export function nextQuery(listing, limit = LIST_PAGE_SIZE) {
  return uploadsQuery({ ...listing.filter, limit, after: listing.next });
}

/** More to load: nothing asked yet, or the last page named a next one. A short page is no end:
 * only a null last_evaluated_key is. */
export function hasMore(listing) {
  return !listing.loaded || listing.next !== null;
}

/** The listing after one page: its items appended (an upload already shown is replaced where it
 * is, not shown twice), and its token for the next page. */
export function withPage(listing, page) {
  const items = [...listing.items];
  for (const view of page.items ?? []) {
    const at = items.findIndex((item) => item.upload_id === view.upload_id);
    if (at === -1) items.push(view);
    else items[at] = view;
  }
  return { ...listing, items, next: page.last_evaluated_key ?? null, loaded: true };
}

/** Whether one "Load more" should ask for another page at once: the pages so far brought fewer
 * than a page of new rows, more follow, and it has not made too many calls yet. */
export function wantsAnotherPage(listing, { added, calls, limit = LIST_PAGE_SIZE }) {
  return listing.next !== null && added < limit && calls < LIST_CALLS_PER_LOAD;
}

export function matchesFilter(view, filter) {
  const { status, prefix } = listFilter(filter);
  return (!status || view.status === status) && String(view.filename ?? "").startsWith(prefix);
}

const createdMs = (view) => Date.parse(view.created_at) || 0;

/** The listing with one upload's latest view (one this tab just uploaded, or re-read): replaced
 * where it is, inserted in newest-first order if it matches the filter, or dropped if it no
 * longer does. An upload older than every row while more pages follow is left for those pages. */
export function withUpload(listing, view) {
  const items = listing.items.filter((item) => item.upload_id !== view.upload_id);
  const shown = items.length !== listing.items.length;
  if (!matchesFilter(view, listing.filter)) return { ...listing, items };
  if (shown) {
    return {
      ...listing,
      items: listing.items.map((item) => (item.upload_id === view.upload_id ? view : item)),
    };
  }
  const at = items.findIndex((item) => createdMs(item) < createdMs(view));
  if (at === -1) {
    if (listing.loaded && listing.next !== null) return listing; // it belongs on a later page
    return { ...listing, items: [...items, view] };
  }
  return { ...listing, items: [...items.slice(0, at), view, ...items.slice(at)] };
}

/** The listing without one upload. */
export function withoutUpload(listing, uploadId) {
  return { ...listing, items: listing.items.filter((item) => item.upload_id !== uploadId) };
}

/** "Stored", "Rejected: the upload was cancelled", ... */
export function statusLabel(view) {
  const label = STATUS_LABELS[view.status] ?? String(view.status);
  if (view.status !== "REJECTED" || !view.reason) return label;
  return `${label}: ${REJECT_REASONS[view.reason] ?? view.reason}`;
}

export function isDownloadable(view) {
  return view.status === "STORED" || view.status === "DUPLICATE";
}

/** What one row of the list shows. `formatTime` turns a Date into text (the browser's locale by
 * default; the tests pass their own). */
export function fileRow(view, { formatTime = (date) => date.toLocaleString() } = {}) {
  const created = new Date(view.created_at);
  const valid = !Number.isNaN(created.getTime());
  return {
    uploadId: view.upload_id,
    name: view.filename,
    size: formatBytes(view.size),
    bytes: `${Number(view.size).toLocaleString("en")} bytes`,
    status: view.status,
    statusText: statusLabel(view),
    created: valid ? formatTime(created) : "",
    createdIso: valid ? created.toISOString() : "",
    downloadable: isDownloadable(view),
  };
}

/** What the confirmation dialog asks before DELETE /uploads/{id}. */
export function deletePrompt(view) {
  const name = view.filename;
  if (view.status === "PENDING") {
    return {
      title: `Cancel the upload of ${name}?`,
      text:
        "Its bytes have not been stored: the upload is cancelled and any bytes already sent " +
        "are discarded. It then shows as rejected until you delete it again.",
      confirm: "Cancel upload",
    };
  }
  if (isDownloadable(view)) {
    return {
      title: `Delete ${name}?`,
      text:
        `The file (${formatBytes(view.size)}) is deleted from your files and can no longer be ` +
        "downloaded. This cannot be undone.",
      confirm: "Delete",
    };
  }
  return {
    title: `Remove ${name}?`,
    text: "Nothing of it was stored: this removes the rejected upload from your files.",
    confirm: "Remove",
  };
}

/** What a DELETE /uploads/{id} answer means for the row: "remove" it, "recheck" it (a cancelled
 * upload stays, now REJECTED: read it again), or "keep" it as it is; and what to tell the person
 * (`error`: say it as an error). */
export function afterDelete(view, status, message = "") {
  const name = view.filename;
  switch (status) {
    case 204:
      return view.status === "PENDING"
        ? { outcome: "recheck", note: `Upload of ${name} cancelled.`, error: false }
        : { outcome: "remove", note: `Deleted ${name}.`, error: false };
    case 404:
      return { outcome: "remove", note: `${name} was already deleted.`, error: false };
    case 409:
      return {
        outcome: "keep",
        note: message || `${name} is being stored right now. Try again in a moment.`,
        error: true,
      };
    default: {
      const why = message || `HTTP ${status}`;
      return {
        outcome: "keep",
        note:
          status >= 500
            ? `Could not delete ${name}: the API failed (${why}). Try again later.`
            : `Could not delete ${name}: ${why}`,
        error: true,
      };
    }
  }
}

/** The line under the list: how many rows are shown, and whether more follow. */
export function listingSummary(listing, { loading = false } = {}) {
  if (!listing.loaded) return loading ? "Loading…" : "";
  const count = listing.items.length;
  const filtered = Boolean(listing.filter.status || listing.filter.prefix);
  if (count === 0 && listing.next === null) {
    return filtered ? "No files match." : "No files yet.";
  }
  const files = `${count.toLocaleString("en")} ${count === 1 ? "file" : "files"}`;
  return listing.next === null ? `${files}.` : `${files} shown; more follow.`;
}

// --- the health view: GET /admin/health (admins) -------------------------------------------------

/** A span of time as the CLI says it, to the minute above one, to the hour above a day:
 * 45 -> "45 s", 125 -> "2 min", 7500 -> "2 h 5 min", 7200 -> "2 h", 273600 -> "3 d 4 h". */
export function formatDuration(seconds) {
  if (!(seconds >= 60)) return `${Math.max(Math.floor(Number(seconds) || 0), 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
  return hours % 24 ? `${Math.floor(hours / 24)} d ${hours % 24} h` : `${Math.floor(hours / 24)} d`;
}

const count = (value) => (Number.isInteger(value) ? value.toLocaleString("en") : "?");

/** An API time (ISO 8601) as {iso, ago: "3 h 5 min ago", exact: formatTime(date)}; null for a
 * null or unreadable time. A time ahead of `now` (clocks differ) reads "0 s ago". */
function moment(value, now, formatTime) {
  const date = value ? new Date(value) : null;
  if (!date || Number.isNaN(date.getTime())) return null;
  return {
    iso: date.toISOString(),
    ago: `${formatDuration((now - date.getTime()) / 1000)} ago`,
    exact: formatTime(date),
  };
}

/** What the Health section shows of a GET /admin/health answer: the attention list (first), a
 * summary line, and each field as {text, when: {iso, ago, exact} | null, alert}. `now` is
 * milliseconds since the epoch; `formatTime` turns a Date into text (the browser's locale by
 * default; the tests pass their own). */
export function healthView(
  health,
  { now = Date.now(), formatTime = (date) => date.toLocaleString() } = {},
) {
  const attention = (health?.attention ?? []).map(String);
  const ok = health?.ok === true && attention.length === 0;
  const ingest = health?.ingest_queue ?? {};
  const dead = health?.dead_letter_queue ?? {};
  const reconciliation = health?.reconciliation ?? {};
  const collection = health?.collection ?? {};
  const field = (text, { when = null, alert = false } = {}) => ({ text, when, alert });

  const age = ingest.oldest_message_age_seconds;
  let oldest = "Unknown (no recent metric)";
  if (typeof age === "number") oldest = formatDuration(age);
  else if (ingest.waiting === 0) oldest = "None waiting";

  const deadTotal = (dead.waiting ?? 0) + (dead.in_flight ?? 0);
  let deadLetters = count(dead.waiting);
  if (dead.in_flight) deadLetters += ` waiting, ${count(dead.in_flight)} in flight`;

  const reconciled = moment(reconciliation.at, now, formatTime);
  let verdict = "Never run";
  if (reconciled && reconciliation.clean === true) verdict = "Clean";
  else if (reconciled && reconciliation.clean === false) {
    const repaired = reconciliation.repaired ? "repaired" : "not repaired";
    verdict = `Drift ${count(reconciliation.drift)} (${repaired})`;
  } else if (reconciled) verdict = "Ran";

  let backlog = `${count(collection.unreferenced)} unreferenced, ${count(collection.due)} due`;
  if (Number.isInteger(collection.grace_seconds)) {
    backlog += ` (grace ${formatDuration(collection.grace_seconds)})`;
  }
  const collected = moment(collection.last_run_at, now, formatTime);
  let lastRun = "Never run";
  if (collected) {
    lastRun = `${count(collection.last_collected)} removed`;
    if (collection.last_run_complete === false) {
      lastRun += " (stopped for time; the next run goes on)";
    }
  }

  const n = attention.length;
  let summary = "Nothing needs attention.";
  if (!ok) {
    summary =
      n === 0
        ? "The API says something needs attention."
        : `${n} ${n === 1 ? "item needs" : "items need"} attention:`;
  }
  return {
    ok,
    attention,
    summary,
    fields: {
      waiting: field(count(ingest.waiting)),
      inFlight: field(count(ingest.in_flight)),
      oldest: field(oldest),
      deadLetters: field(deadLetters, { alert: deadTotal > 0 }),
      reconciliation: field(verdict, {
        when: reconciled,
        alert: reconciled !== null && reconciliation.clean === false,
      }),
      backlog: field(backlog),
      collection: field(lastRun, { when: collected }),
    },
  };
}
