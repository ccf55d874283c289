// The onecopy API client, the Cognito sign-in client, and the upload of one file: hash, create,
// send the bytes, poll.
import {
  MULTIPART_THRESHOLD,
  PART_ATTEMPTS,
  PartProgress,
  UploadError,
  afterPartFailure,
  batches,
  explainPutFailure,
  explainSignInFailure,
  isFinal,
  partRetryDelay,
  planParts,
  pollDelay,
  sendableHeaders,
  shouldHash,
  wantsMultipart,
} from "./logic.js";

/** How long an uploaded file may stay PENDING before the page stops waiting for it. */
const PROCESSING_DEADLINE_MS = 5 * 60 * 1000;
// How long each status request asks the API to hold on for the upload to finish (its maximum).
const STATUS_WAIT_SECONDS = 20;

/** Parts of one file in flight at once. */
const PART_CONCURRENCY = 4;

/** What a signed-out caller gets; the page sends the person back to the sign-in form. */
export class SignedOut extends UploadError {
  constructor(message = "Your session has ended. Sign in again.") {
    super(message);
    this.name = "SignedOut";
  }
}

export class Api {
  #token;
  #onSignedOut;

  /** `token()` resolves to the IdToken to send (fresh: it may refresh first), or null when
   * signed out; `onSignedOut(message)` is told when the API answers 401. */
  constructor(baseUrl, { token = async () => null, onSignedOut = () => {} } = {}) {
    this.baseUrl = baseUrl;
    this.#token = token;
    this.#onSignedOut = onSignedOut;
  }

  async #fetch(method, path, body, { signed = true } = {}) {
    const headers = body ? { "Content-Type": "application/json" } : {};
    if (signed) {
      const token = await this.#token();
      if (!token) throw new SignedOut();
      headers.Authorization = `Bearer ${token}`;
    }
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
      });
    } catch {
      throw new UploadError(
        navigator.onLine === false
          ? "You are offline. Reconnect, then try again."
          : `Cannot reach the API at ${this.baseUrl}. ` +
              "Check your connection, or the API URL in Settings.",
      );
    }
    if (response.status === 401 && signed) {
      const error = new SignedOut();
      this.#onSignedOut(error.message);
      throw error;
    }
    return response;
  }

  /** JSON in, JSON out. Throws UploadError with a message a person can act on. */
  async call(method, path, body, { accept = [], signed = true } = {}) {
    const response = await this.#fetch(method, path, body, { signed });
    const data = await response.json().catch(() => null);
    if (data === null) {
      throw new UploadError(
        `The API at ${this.baseUrl} did not answer with JSON (HTTP ${response.status}). ` +
          "Check the API URL in Settings.",
      );
    }
    if (!response.ok && !accept.includes(response.status)) {
      const why = data.message ?? `HTTP ${response.status}`;
      throw new UploadError(
        response.status >= 500 ? `The API failed (${why}). Try again later.` : why,
      );
    }
    return { status: response.status, data };
  }

  /** Where and how to sign in (public): {issuer, user_pool_id, client_id, region,
   * cognito_endpoint}. */
  async authConfig() {
    return (await this.call("GET", "/auth/config", null, { signed: false })).data;
  }

  /** The upload instructions, or {held: true, upload_id} when this content is already stored. */
  async createUpload(file, sha256, { multipart = false } = {}) {
    const request = { filename: file.name, size: file.size };
    if (file.type) request.content_type = file.type;
    if (sha256) request.sha256 = sha256;
    if (multipart) request.multipart = true;
    const { status, data } = await this.call("POST", "/uploads", request, { accept: [409] });
    if (status === 409) {
      if (data.status !== "DUPLICATE") throw new UploadError(data.message ?? "HTTP 409");
      return { held: true, upload_id: data.upload_id };
    }
    return data;
  }

  /** Presigned URLs of some parts (at most 100): [{part_number, url, headers}]. */
  async partUrls(uploadId, partNumbers) {
    const body = { part_numbers: partNumbers };
    return (await this.call("POST", `/uploads/${uploadId}/parts`, body)).data.parts;
  }

  /** Assemble the parts, [{part_number, etag}]; the upload then stays PENDING until processed. */
  async completeParts(uploadId, parts) {
    return (await this.call("POST", `/uploads/${uploadId}/complete`, { parts })).data;
  }

  /** Abandon a pending upload (S3 discards its parts). 204 has no body, so no call(). */
  async abort(uploadId) {
    const response = await this.#fetch("DELETE", `/uploads/${uploadId}`);
    if (!response.ok) throw new UploadError(`Could not cancel upload ${uploadId}.`);
  }

  /** GET /uploads/{id}; with `wait` seconds, the API answers once the upload is done or they
   * have passed, whichever is first. */
  async getUpload(uploadId, wait = 0) {
    const query = wait > 0 ? `?wait=${wait}` : "";
    return (await this.call("GET", `/uploads/${uploadId}${query}`)).data;
  }

  /** An upload's view, or null once it is gone (404). */
  async findUpload(uploadId) {
    const { status, data } = await this.call("GET", `/uploads/${uploadId}`, null, {
      accept: [404],
    });
    return status === 404 ? null : data;
  }

  /** One page of the caller's uploads, newest first: {items, last_evaluated_key}. `query` is
   * logic.uploadsQuery's string (limit, status, prefix, last_evaluated_key). */
  async listUploads(query) {
    return (await this.call("GET", `/uploads?${query}`)).data;
  }

  /** DELETE /uploads/{id}: {status, message}, whatever the status (logic.afterDelete says what
   * it means); throws only when the API cannot be reached or the session has ended. */
  async deleteUpload(uploadId) {
    const response = await this.#fetch("DELETE", `/uploads/${uploadId}`);
    const data = await response.json().catch(() => null);
    return { status: response.status, message: data?.message ?? "" };
  }

  async stats() {
    return (await this.call("GET", "/admin/stats")).data;
  }

  /** The health view (admins): queues, dead letters, the last reconciliation and collection,
   * and what needs attention; logic.healthView says how to show it. */
  async health() {
    return (await this.call("GET", "/admin/health")).data;
  }

  /** One page of stored contents (admins): {items, last_evaluated_key}. */
  async hashes(after = null, limit = 50) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (after) query.set("last_evaluated_key", after);
    return (await this.call("GET", `/admin/hashes?${query}`)).data;
  }

  /** A short-lived presigned URL of an upload's bytes, saved under its filename. A plain link to
   * the API cannot be used: a browser following it sends no Authorization header. */
  async downloadUrl(uploadId) {
    return (await this.call("GET", `/download/${uploadId}`)).data.url;
  }
}

/** Cognito's user-pool API, as a browser calls it: unsigned JSON POSTs naming the operation in
 * X-Amz-Target. Only InitiateAuth is needed: a password sign-in, and refreshes. */
export class Cognito {
  constructor(endpoint, clientId) {
    this.endpoint = endpoint;
    this.clientId = clientId;
  }

  signIn(username, password) {
    return this.#initiateAuth("USER_PASSWORD_AUTH", { USERNAME: username, PASSWORD: password });
  }

  refresh(refreshToken) {
    return this.#initiateAuth("REFRESH_TOKEN_AUTH", { REFRESH_TOKEN: refreshToken });
  }

  /** Cognito's AuthenticationResult; throws UploadError (`status` 0: no answer) otherwise. */
  async #initiateAuth(flow, parameters) {
    let response;
    try {
      response = await fetch(this.endpoint, {
        method: "POST",
        headers: {
          "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
          "Content-Type": "application/x-amz-json-1.1",
        },
        body: JSON.stringify({
          AuthFlow: flow,
          ClientId: this.clientId,
          AuthParameters: parameters,
        }),
      });
    } catch {
      throw Object.assign(new UploadError(explainSignInFailure(0, null)), { status: 0 });
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = explainSignInFailure(response.status, data);
      throw Object.assign(new UploadError(message), { status: response.status });
    }
    if (!data?.AuthenticationResult) {
      // A challenge (a new password, MFA): this page signs in with a password only.
      throw Object.assign(
        new UploadError(
          `This account needs a step this page cannot do (${data?.ChallengeName ?? "unknown"}). ` +
            "Ask an administrator.",
        ),
        { status: response.status },
      );
    }
    return data.AuthenticationResult;
  }
}

// --- strategies: how bytes reach storage ---------------------------------------------------------
// POST /uploads answers with the instructions of one strategy: `upload` for a single PUT, or
// `multipart` for an upload in parts. A strategy is a function (file, created, {api, onProgress})
// that resolves once storage holds the bytes; onProgress(loadedBytes) reports along the way.

function putSingle(file, created, { onProgress }) {
  const { url, headers } = created.upload;
  return new Promise((resolve, reject) => {
    // XMLHttpRequest, not fetch: only it reports upload progress.
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(sendableHeaders(headers))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else reject(explainPutFailure(xhr.status, xhr.responseText));
    };
    xhr.onerror = () => reject(explainPutFailure(0, ""));
    xhr.send(file);
  });
}

/** One PUT of `body` to a presigned URL; resolves to the response's ETag. Rejects with
 * {status, body} (status 0: no HTTP answer). `xhrs` collects the request so it can be aborted. */
function putPart(url, headers, body, { onProgress, xhrs }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhrs.add(xhr);
    const settle = (fn, value) => {
      xhrs.delete(xhr);
      fn(value);
    };
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(sendableHeaders(headers))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status < 200 || xhr.status >= 300) {
        settle(reject, { status: xhr.status, body: xhr.responseText });
        return;
      }
      const etag = xhr.getResponseHeader("ETag");
      if (etag) settle(resolve, etag);
      else
        settle(
          reject,
          new UploadError(
            "The storage service accepted a part but its ETag was not readable: its CORS " +
              "configuration must expose the ETag header.",
          ),
        );
    };
    xhr.onerror = () => settle(reject, { status: 0, body: "" });
    xhr.onabort = () => settle(reject, new UploadError("The upload was cancelled."));
    xhr.send(body);
  });
}

/** Presigned part URLs, asked for in batches of up to 100 as the parts come up (not all at once:
 * they expire, and a 5 TiB file has 10,000 parts). */
class PartUrls {
  #api;
  #uploadId;
  #pending;
  #asked = new Map();

  constructor(api, uploadId, partNumbers) {
    this.#api = api;
    this.#uploadId = uploadId;
    this.#pending = batches(partNumbers);
  }

  get(partNumber) {
    if (!this.#asked.has(partNumber)) {
      const batch = this.#pending.find((numbers) => numbers.includes(partNumber)) ?? [partNumber];
      this.#pending = this.#pending.filter((numbers) => numbers !== batch);
      this.#request(batch);
    }
    return this.#asked.get(partNumber);
  }

  /** A new URL for one part, after storage refused its old one (expired). */
  refresh(partNumber) {
    this.#request([partNumber]);
    return this.#asked.get(partNumber);
  }

  #request(numbers) {
    const answer = this.#api.partUrls(this.#uploadId, numbers);
    for (const number of numbers) {
      const one = answer.then((parts) => {
        const found = parts.find((part) => part.part_number === number);
        if (!found) throw new UploadError(`The API gave no URL for part ${number}.`);
        return found;
      });
      one.catch(() => {}); // awaited by whoever uses this part; unhandled otherwise
      this.#asked.set(number, one);
    }
  }
}

/** The multipart strategy: parts PUT in parallel, each retried, then assembled by the API. On a
 * failure nothing can fix, the upload is aborted (DELETE) so S3 drops the parts it holds. */
async function putInParts(file, created, { api, onProgress }) {
  const uploadId = created.upload_id;
  const { part_size: partSize, part_count: partCount } = created.multipart;
  const parts = planParts(file.size, partSize, partCount);
  const urls = new PartUrls(api, uploadId, parts.map((part) => part.partNumber));
  const progress = new PartProgress(parts);
  const xhrs = new Set();
  const etags = new Map();
  let failure = null;

  const sendPart = async (part) => {
    for (let attempt = 1; ; attempt += 1) {
      const { url, headers } = await urls.get(part.partNumber);
      try {
        const etag = await putPart(url, headers, file.slice(part.start, part.end), {
          xhrs,
          onProgress: (loaded) => onProgress(progress.update(part.partNumber, loaded)),
        });
        onProgress(progress.finish(part.partNumber));
        return etag;
      } catch (error) {
        if (error instanceof UploadError || failure) throw error;
        onProgress(progress.restart(part.partNumber));
        const next = afterPartFailure(error.status, attempt, PART_ATTEMPTS);
        if (next === "give-up") {
          const why = explainPutFailure(error.status, error.body);
          throw new UploadError(
            `Part ${part.partNumber} of ${partCount} failed after ${attempt} ` +
              `attempt${attempt === 1 ? "" : "s"}: ${why.message}`,
            { rejected: why.rejected },
          );
        }
        await sleep(partRetryDelay(attempt));
        if (failure) throw failure; // another part failed for good meanwhile
        if (next === "refresh") urls.refresh(part.partNumber);
      }
    }
  };

  const queue = [...parts];
  const lane = async () => {
    while (queue.length > 0 && !failure) {
      const part = queue.shift();
      etags.set(part.partNumber, await sendPart(part));
    }
  };

  try {
    await Promise.all(
      Array.from({ length: Math.min(PART_CONCURRENCY, parts.length) }, () =>
        lane().catch((error) => {
          failure ??= error;
          for (const xhr of xhrs) xhr.abort(); // the other parts are wasted work now
        }),
      ),
    );
    if (failure) throw failure;
    await api.completeParts(
      uploadId,
      parts.map((part) => ({ part_number: part.partNumber, etag: etags.get(part.partNumber) })),
    );
  } catch (error) {
    const aborted = await api.abort(uploadId).then(
      () => true,
      () => false,
    );
    const after = aborted ? "The upload was cancelled" : `Upload ${uploadId} was left unfinished`;
    throw new UploadError(`${error.message} ${after}; pick the file again to retry.`, {
      rejected: error.rejected ?? false,
    });
  }
}

function strategyFor(created) {
  if (created.upload?.method === "PUT") return putSingle;
  if (created.multipart) return putInParts;
  throw new UploadError(
    "The API answered with upload instructions this page does not know. Reload the page.",
  );
}

// --- hashing -------------------------------------------------------------------------------------

function hashInWorker(file) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./hash-worker.js", import.meta.url), { type: "module" });
    worker.onmessage = ({ data }) => {
      worker.terminate();
      if (data.error) reject(new UploadError(data.error));
      else resolve(data.sha256);
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new UploadError(`The hashing worker failed: ${event.message ?? "unknown error"}`));
    };
    worker.postMessage(file);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- one file, start to finish -------------------------------------------------------------------

export class Uploader {
  #api;
  #concurrency;
  #running = 0;
  #waiting = [];
  #hashing = Promise.resolve();
  #lastOfContent = new Map();

  #multipartThreshold;

  constructor(api, { concurrency = 3, multipartThreshold = MULTIPART_THRESHOLD } = {}) {
    this.#api = api;
    this.#concurrency = concurrency;
    this.#multipartThreshold = multipartThreshold;
  }

  /** Upload one file, reporting each step as an event for logic.advance(); never throws. */
  async upload(file, report) {
    await this.#acquire();
    try {
      const { sha256, turn, done } = await this.#hash(file, report);
      try {
        await turn;
        await this.#send(file, sha256, report);
      } finally {
        done();
      }
    } catch (error) {
      report({ type: "failed", error });
    } finally {
      this.#release();
    }
  }

  /** At most `concurrency` files in flight; the others wait their turn in pick order. */
  async #acquire() {
    if (this.#running < this.#concurrency) {
      this.#running += 1;
      return;
    }
    await new Promise((resolve) => this.#waiting.push(resolve)); // #release hands its slot over
  }

  #release() {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running -= 1;
  }

  /** Files are hashed one at a time (each hash holds the whole file in memory), in pick order. */
  #hash(file, report) {
    if (!shouldHash(file.size, Boolean(globalThis.crypto?.subtle))) {
      report({ type: "creating" });
      return { sha256: null, turn: null, done: () => {} };
    }
    report({ type: "hashing" });
    const job = this.#hashing
      .then(() => hashInWorker(file))
      .then((sha256) => {
        report({ type: "hashed", sha256 });
        return { sha256, ...this.#queueBehindSameContent(sha256) };
      });
    this.#hashing = job.catch(() => {});
    return job;
  }

  /** A copy of a file picked earlier waits until that one is stored, then gets the 409 and
   * uploads nothing, instead of sending the same bytes twice. */
  #queueBehindSameContent(sha256) {
    const turn = this.#lastOfContent.get(sha256);
    let done;
    const finished = new Promise((resolve) => {
      done = resolve;
    });
    this.#lastOfContent.set(sha256, finished);
    return { turn, done };
  }

  async #send(file, sha256, report) {
    const created = await this.#api.createUpload(file, sha256, {
      multipart: wantsMultipart(file.size, this.#multipartThreshold),
    });
    if (created.held) {
      report({ type: "held", uploadId: created.upload_id });
      return;
    }
    report({ type: "created", uploadId: created.upload_id });
    const onProgress = (loaded) => report({ type: "progress", loaded });
    await strategyFor(created)(file, created, { api: this.#api, onProgress });
    report({ type: "sent" });
    await this.#poll(created.upload_id, report);
  }

  async #poll(uploadId, report) {
    const deadline = Date.now() + PROCESSING_DEADLINE_MS;
    for (let attempt = 0; Date.now() < deadline; attempt += 1) {
      const asked = Date.now();
      let body = null;
      try {
        body = await this.#api.getUpload(uploadId, STATUS_WAIT_SECONDS);
      } catch (error) {
        if (error instanceof SignedOut) throw error;
        // retried until the deadline: the upload itself succeeded
      }
      if (body && isFinal(report({ type: "status", body }).phase)) return;
      // The API waited for us, so ask again at once; an early answer (an error) backs off.
      if (Date.now() - asked < STATUS_WAIT_SECONDS * 1000) await sleep(pollDelay(attempt));
    }
    throw new UploadError(
      `Uploaded, but not processed within ${PROCESSING_DEADLINE_MS / 60000} minutes. ` +
        `Check upload ${uploadId} again later.`,
    );
  }
}
