// Who is signed in. Tokens live in memory and sessionStorage (gone with the tab), never
// in a cookie and never in a URL.

import { config, request } from "./api.js";
import * as cognito from "./cognito.js";

const KEY = "cruddur.session";
const listeners = new Set();
// A dev sign-in found past its time when the page loaded: the page says so, or the post
// form just vanished without a word.
export let endedOnLoad = false;
let session = load();

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (!saved || !saved.accessToken) return null;
    // A dev token past its time cannot be renewed: shown as signed in, the reader only
    // learnt otherwise when a post was refused. (A Cognito one renews itself.)
    if (saved.source === "dev" && !(saved.expiresAt > Date.now())) {
      // Its token gone, who it was kept: a page of the tab's history the browser kept
      // whole, Back brings back as it was (changedInTab), its draft too.
      sessionStorage.setItem(KEY, JSON.stringify({ source: "dev", handle: saved.handle, ranOut: true }));
      endedOnLoad = true;
      return null;
    }
    return saved;
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  try {
    if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
    else sessionStorage.removeItem(KEY);
  } catch {
    // storage refused (a privacy setting): signed in for this page's life only
  }
  for (const listener of listeners) listener(session);
}

// A page the browser kept in its back/forward cache comes back with the session it had:
// signed in (and able to post) after the reader signed out on a later page of the tab.
// True when the tab's stored sign-in is another person's, or none, than this page's;
// the same person's newer tokens are taken on.
export function changedInTab() {
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return false; // storage refused: this page's memory is the only sign-in
  }
  const who = (s) => (s && s.accessToken ? `${s.source} ${s.handle}` : null);
  // This page's dev sign-in, run out and dropped by a later page: nothing can post with
  // it, and the page (its draft too) is kept, to say so when it is used, as before.
  // Reloaded, the draft was lost. (A Cognito one holds a refresh token: reloaded.)
  const mine = session?.source === "dev" ? session : null;
  const ranOut = mine && (saved ? saved.ranOut && saved.handle === mine.handle : !(mine.expiresAt > Date.now()));
  if (who(saved) !== who(session) && !ranOut) return true;
  if (saved?.accessToken) session = saved; // the same person's newer tokens
  return false;
}

export const onChange = (listener) => listeners.add(listener);
export const current = () => session;
export const mode = () => (config.cognito ? "cognito" : config.devSignIn ? "dev" : "none");

function fromCognito(result, previous = {}) {
  return {
    ...previous,
    source: "cognito",
    accessToken: result.AccessToken,
    refreshToken: result.RefreshToken || previous.refreshToken,
    expiresAt: Date.now() + (result.ExpiresIn || 3600) * 1000,
  };
}

export async function devUsers() {
  return (await request("/api/dev/users")).data;
}

export async function signInDev(handle) {
  const { data } = await request("/api/dev/sign-in", { method: "POST", body: { handle } });
  save({
    source: "dev",
    accessToken: data.access_token,
    expiresAt: Date.now() + data.expires_in * 1000,
    handle: data.handle,
    name: "",
  });
}

export async function signInCognito(email, password) {
  const signedIn = fromCognito(await cognito.signIn(email, password));
  const attributes = await cognito.profile(signedIn.accessToken);
  save({ ...signedIn, handle: attributes.preferred_username || email, name: attributes.name || "" });
}

export function signOut() {
  save(null);
}

// An access token good for the next minute, refreshed from Cognito when needed; null
// when signed out or when the sign-in has run out. Cognito out of reach (a network blip)
// is an error to show, the sign-in kept: it signed the reader out, as a refused token does.
export async function token() {
  if (!session) return null;
  if (session.expiresAt - Date.now() > 60_000) return session.accessToken;
  if (session.source === "cognito" && session.refreshToken) {
    try {
      save(fromCognito(await cognito.refresh(session.refreshToken), session));
      return session.accessToken;
    } catch (error) {
      if (!REFUSED_SIGN_IN.has(error?.type)) throw error;
      // refused: signed out below
    }
  }
  save(null);
  return null;
}

// What Cognito answers a refresh token it will not take (expired, revoked, its user gone).
const REFUSED_SIGN_IN = new Set(["NotAuthorizedException", "UserNotFoundException"]);

// Each message's Idempotency-Key until it is stored: sent again after an error (an
// answer lost after its commit), it is stored once. Kept in this tab's sessionStorage, as
// the sign-in is, so that the same words sent again after a reload still are (in memory,
// a reload forgot the key and the message was stored twice); for less than the 24 hours
// the API keeps a key, and only the newest few.
const KEYS = "cruddur.waitingKeys";
const KEY_LIFETIME_MS = 23 * 3600_000;
const KEPT_KEYS = 20;
// The page's own copy, read from storage once and kept up to date with it: where storage
// is blocked or full the keys still last as long as the page, as the sign-in does (none
// kept at all stored a post twice).
let keptInMemory = null;

function waitingKeys() {
  if (keptInMemory === null) {
    try {
      keptInMemory = JSON.parse(sessionStorage.getItem(KEYS) || "[]");
    } catch {
      keptInMemory = []; // blocked or unreadable
    }
  }
  const saved = keptInMemory;
  const oldest = Date.now() - KEY_LIFETIME_MS;
  return (Array.isArray(saved) ? saved : []).filter(
    (entry) => entry && typeof entry.what === "string" && typeof entry.key === "string" && entry.at > oldest,
  );
}

function keepWaitingKeys(entries) {
  keptInMemory = entries.slice(-KEPT_KEYS);
  try {
    sessionStorage.setItem(KEYS, JSON.stringify(keptInMemory));
  } catch {
    // blocked or full: the page's copy serves
  }
}

// Who sends which words where, as the list names it: a digest, so that the tab keeps no
// unsent message (nor whose it was) for the next person at the computer to read. 53 bits
// (two 32-bit multiplicative lanes, folded): among a user's 20 waiting messages two
// alike by chance are out of the question.
function digest(text) {
  let a = 0x9e3779b9;
  let b = 0x85ebca6b;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    a = Math.imul(a ^ unit, 0x01000193);
    b = Math.imul(b ^ unit, 0x5bd1e995);
  }
  a = Math.imul(a ^ (a >>> 15), 0x2c1b3c6d) ^ Math.imul(b ^ (b >>> 13), 0x297a2d39);
  b = Math.imul(b ^ (b >>> 16), 0x85ebca6b) ^ Math.imul(a ^ (a >>> 13), 0xc2b2ae35);
  return (0x200000 * ((b >>> 0) & 0x1fffff) + (a >>> 0)).toString(36);
}

function keyFor(what) {
  const entries = waitingKeys();
  const found = entries.find((entry) => entry.what === what);
  if (found) return found.key;
  const key = newKey();
  keepWaitingKeys([...entries, { what, key, at: Date.now() }]);
  return key;
}

const stored = (what) => keepWaitingKeys(waitingKeys().filter((entry) => entry.what !== what));
const newKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

// A write as the signed-in user; a 401 (expired or revoked) signs out.
export async function write(path, body) {
  const accessToken = await token();
  if (!accessToken) {
    const error = new Error("Your sign-in has run out. Sign in again to post.");
    error.status = 401;
    throw error;
  }
  const what = digest([session.handle, path, JSON.stringify(body)].join("\n")); // each user's own
  try {
    let answer = await request(path, { method: "POST", body, token: accessToken, key: keyFor(what) });
    stored(what);
    if (answer.replayed && Date.parse(answer.data?.expires_at) <= Date.now()) {
      // The same words again, after the crud they were first stored as has expired: a new
      // one is meant (the replay said "Posted." of a crud already gone).
      answer = await request(path, { method: "POST", body, token: accessToken, key: keyFor(what) });
      stored(what);
    }
    return answer;
  } catch (error) {
    if (error.status === 401) {
      save(null);
      error.message = "Your sign-in is no longer valid. Sign in again to post.";
    } else if (error.status === 403 && error.code === "no_user") {
      error.message =
        "Your account is confirmed, but your Cruddur profile has not been created yet. " +
        "It is made when you confirm your sign-up; if this lasts, ask the operator: " +
        "`cruddur users sync-cognito` adds it, or says why it cannot (a handle taken meanwhile).";
    }
    throw error;
  }
}
