// Computes a file's SHA-256 off the main thread, so the page stays responsive.
// Message in: a File. Message out: {sha256} or {error}.
import { toHex } from "./logic.js";

self.onmessage = async ({ data: file }) => {
  try {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    self.postMessage({ sha256: toHex(digest) });
  } catch (error) {
    self.postMessage({ error: `could not read the file: ${error.message}` });
  }
};
