// The JSON API, as the page uses it: pages with their `Link: rel="next"`, errors in words.

const meta = document.querySelector('meta[name="cruddur-config"]');
export const config = JSON.parse(meta?.content || "{}");
const BASE = config.api || "";

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.code = body?.error || "";
    this.fields = body?.errors || [];
    this.requestId = body?.request_id || "";
  }
}

function describe(status, body) {
  if (status === 0) return body?.message || "Cannot reach the Cruddur API. Check your connection and try again.";
  if (status === 503 && body?.error === "database_unavailable") {
    return "The database is not answering. Try again in a moment."; // read() says it retries
  }
  const said = body?.message || `the server answered ${status}`;
  if (status >= 500) {
    const id = body?.request_id ? ` (request id ${body.request_id})` : "";
    return `Something went wrong on the server${id}: ${said}`;
  }
  return said.charAt(0).toUpperCase() + said.slice(1);
}

// The URL of rel="next" in a Link header, or null.
export function nextLink(header) {
  const match = /<([^>]+)>\s*;\s*rel="?next"?/.exec(header || "");
  return match ? match[1] : null;
}

// The primary's WAL position after this tab's last write (X-Read-After). Sent back on
// reads, so that a replica serving them shows the write (README, "Scaling out"); kept in
// sessionStorage so that a reload of the tab still shows it. Only for readAfterSeconds:
// past that any read shows the write, and the header would only keep the tab off the
// server's kept first page of the feed.
const READ_AFTER_KEY = "cruddur.readAfter";
const READ_AFTER_MS = (config.readAfterSeconds || 8) * 1000;
let readAfter = remembered(); // {position, until} or null

function remembered() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(READ_AFTER_KEY) || "null");
    return typeof saved?.position === "string" && typeof saved.until === "number" ? saved : null;
  } catch {
    return null; // storage refused (a privacy setting), or not ours: this page's memory only
  }
}

function remember(position) {
  readAfter = { position, until: Date.now() + READ_AFTER_MS };
  try {
    sessionStorage.setItem(READ_AFTER_KEY, JSON.stringify(readAfter));
  } catch {
    // kept in memory all the same
  }
}

function readAfterNow() {
  if (readAfter && Date.now() < readAfter.until) return readAfter.position;
  if (readAfter) forgetReadAfter();
  return null;
}

function forgetReadAfter() {
  readAfter = null;
  try {
    sessionStorage.removeItem(READ_AFTER_KEY);
  } catch {
    // nothing kept
  }
}

export async function request(path, options = {}) {
  const position = (options.method || "GET") === "GET" ? readAfterNow() : null;
  try {
    return await requestOnce(path, options, position);
  } catch (error) {
    // A position this server did not sign (another instance's key, or a key made anew
    // when it restarted): read without it rather than fail the page. Forgotten only if
    // it is still the one kept (a write since may have kept a newer one).
    if (error.code !== "invalid_read_after" || !position) throw error;
    if (readAfter?.position === position) forgetReadAfter();
    return requestOnce(path, options, null);
  }
}

async function requestOnce(path, { method = "GET", body, token, key } = {}, position = null) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (key) headers["Idempotency-Key"] = key;
  if (position) headers["X-Read-After"] = position;
  let response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // no cookie is ever part of signing in
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, null);
  }
  let data;
  try {
    data = await response.json();
  } catch {
    // not JSON
  }
  // A 404 that is not the API's (its body names an error): whatever answers there is
  // not the API (a static host's own page), so no user or crud is missing.
  if (response.status === 404 && typeof data?.error !== "string") throw notTheApi();
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    error.retryAfter = retryAfterMs(response.headers.get("Retry-After"));
    throw error;
  }
  // Not JSON (a static host's index.html, a captive portal): not the API, whatever 2xx.
  if (data === undefined || !/json/i.test(response.headers.get("Content-Type"))) throw notTheApi();
  const written = response.headers.get("X-Read-After");
  if (written) remember(written);
  // A write's answer given again for its Idempotency-Key: stored before, not now.
  const replayed = response.headers.get("Idempotent-Replayed") === "true";
  return { data, next: nextLink(response.headers.get("Link")), replayed };
}

const notTheApi = () =>
  new ApiError(0, {
    message: `The Cruddur API did not answer at ${BASE || location.origin}: check the page's --api-url (CRUDDUR_API_URL).`,
  });

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// Retry-After (seconds or a date) in ms, kept within 1 to 30 s; null when absent.
function retryAfterMs(value) {
  if (!value) return null;
  const ms = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
  return Number.isNaN(ms) ? null : Math.min(30_000, Math.max(1000, ms));
}

// A read, retried while the service is unavailable (503), telling `waiting` each time:
// never sooner than its Retry-After. Only the database's own 503 is said to be the
// database; any other (no schema yet, a load balancer's) keeps its own words.
export async function read(path, waiting = () => {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request(path);
    } catch (error) {
      if (error.status !== 503) throw error;
      const database = error.code === "database_unavailable";
      if (attempt >= 6) {
        // Not "reload the page": a reload empties the post box, and a button to ask again
        // ("Try again", "Load more") is beside this line.
        if (database) error.message = "The database is still not answering. Try again in a moment.";
        throw error;
      }
      if (database) error.message = "The database is not answering; retrying…";
      waiting(error);
      await sleep(Math.max(error.retryAfter ?? 0, Math.min(8000, 1000 * 2 ** (attempt - 1))));
    }
  }
}

export const feedPath = (handle) =>
  handle ? `/api/activities/@${encodeURIComponent(handle)}` : "/api/activities/home";
export const crudPath = (uuid) => `/api/activities/${encodeURIComponent(uuid)}`;
