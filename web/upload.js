// The onecopy API client and the upload of one file: hash, create, send the bytes, poll.
import {
  UploadError,
  explainPutFailure,
  isFinal,
  pollDelay,
  sendableHeaders,
  shouldHash,
} from "./logic.js";

/** How long an uploaded file may stay PENDING before the page stops waiting for it. */
const PROCESSING_DEADLINE_MS = 5 * 60 * 1000;

export class Api {
  constructor(baseUrl) {
    this.baseUrl = baseUrl;
  }

  /** JSON in, JSON out. Throws UploadError with a message a person can act on. */
  async call(method, path, body, { accept = [] } = {}) {
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers: body ? { "Content-Type": "application/json" } : {},
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

  /** The upload instructions, or {held: true, upload_id} when this content is already stored. */
  async createUpload(file, sha256) {
    const request = { filename: file.name, size: file.size };
    if (file.type) request.content_type = file.type;
    if (sha256) request.sha256 = sha256;
    const { status, data } = await this.call("POST", "/uploads", request, { accept: [409] });
    if (status === 409) {
      if (data.status !== "DUPLICATE") throw new UploadError(data.message ?? "HTTP 409");
      return { held: true, upload_id: data.upload_id };
    }
    return data;
  }

  async getUpload(uploadId) {
    return (await this.call("GET", `/uploads/${uploadId}`)).data;
  }

  async stats() {
    return (await this.call("GET", "/admin/stats")).data;
  }

  /** A link that redirects to a short-lived download URL when followed. */
  downloadLink(uploadId) {
    return `${this.baseUrl}/download/${uploadId}?redirect=true`;
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

async function inParts() {
  throw new UploadError(
    "Files this large are uploaded in parts, which this page cannot do yet. " +
      "Upload this one with the onecopy command-line tool (onecopy upload).",
  );
}

function strategyFor(created) {
  if (created.upload?.method === "PUT") return putSingle;
  if (created.multipart) return inParts;
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

  constructor(api, { concurrency = 3 } = {}) {
    this.#api = api;
    this.#concurrency = concurrency;
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
    const created = await this.#api.createUpload(file, sha256);
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
      await sleep(pollDelay(attempt));
      let body;
      try {
        body = await this.#api.getUpload(uploadId);
      } catch {
        continue; // a failed poll is retried until the deadline: the upload itself succeeded
      }
      if (isFinal(report({ type: "status", body }).phase)) return;
    }
    throw new UploadError(
      `Uploaded, but not processed within ${PROCESSING_DEADLINE_MS / 60000} minutes. ` +
        `Check upload ${uploadId} again later.`,
    );
  }
}
