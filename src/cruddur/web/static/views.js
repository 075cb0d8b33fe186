// The pages: feeds, one crud with its replies, the forms. Everything from the API is
// inserted as text (dom.js), so a crud that says <script> shows those characters.

import { crudPath, feedPath, read, request } from "./api.js";
import * as auth from "./auth.js";
import * as cognito from "./cognito.js";
import { append, h, icon, replace, uid } from "./dom.js";
import { keepDraft } from "./drafts.js";
import { ago, exact, expiresIn } from "./timefmt.js";

// The API's limits (cruddur/limits.py; tests/test_limits.py holds them together).
export const MESSAGE_MAX = 280; // the API's limit for a crud (replies: 1,024)
const REPLY_MAX = 1024;
const TTLS = ["30-days", "7-days", "3-days", "1-day", "12-hours", "3-hours", "1-hour"];
const TTL_WORDS = {
  "30-days": "30 days", "7-days": "7 days", "3-days": "3 days", "1-day": "1 day",
  "12-hours": "12 hours", "3-hours": "3 hours", "1-hour": "1 hour",
}; // prettier-ignore

let flash = ""; // a sentence for the next page (after signing in, confirming …)
let pendingEmail = ""; // between sign-up, sign-in and confirm; kept in memory only
export const setFlash = (text) => (flash = text);
let renderAgain = null; // main.js: the page at this address, drawn again
export const onRetry = (fn) => (renderAgain = fn);

// A page whose first read found no server (unreachable, 5xx): a button to ask again
// without a reload (reloaded while the server is down, the page is the browser's own
// error), and the same once the browser says it is online again.
function offerRetry(status, error) {
  if (!(error.status === 0 || error.status >= 500) || !status.isConnected) return;
  const again = h("button", { type: "button", class: "more" }, "Try again");
  again.addEventListener("click", () => renderAgain?.());
  status.after(again);
  window.addEventListener("online", () => again.isConnected && renderAgain?.(), { once: true });
}

const userPath = (handle) => `/@${encodeURIComponent(handle)}`;
const statusPath = (a) => `${userPath(a.handle)}/status/${a.uuid}`;
// The parent's author is not in a reply's row: its address names no one, and the crud
// page moves it to the author's once it has loaded (not the replier's, as it once was).
const parentPath = (a) => `/status/${a.reply_to_activity_uuid}`;
// Embeddings, overrides, isolates: a name ending in PDI + RLO closed its isolate and
// turned the handle beside it around. Marks (U+200E/F, U+061C) act only inside it.
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/gu;
const plain = (text) => `${text ?? ""}`.replace(BIDI_CONTROLS, "");
// Users' text in a plain-text line (a title, an option): first strong isolate … pop,
// so that it cannot reorder what follows, as .name's CSS does on the page.
const isolate = (text) => `\u2068${plain(text)}\u2069`;
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function initials(name, handle) {
  const words = `${name || ""}`.trim().split(/\s+/u).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => [...w][0].toUpperCase()).join("");
  return letters || [...(handle || "?")][0].toUpperCase();
}

function hue(handle) {
  let sum = 0;
  for (const ch of handle || "") sum = (sum * 31 + ch.codePointAt(0)) % 997;
  return `avatar hue${sum % 8}`;
}

function heading(text, extra = {}) {
  return h("h1", { tabindex: "-1", ...extra }, text);
}

function statusLine(text = "", kind = "status") {
  return h("p", { class: kind, role: kind === "error" ? "alert" : "status" }, text);
}

function flashLine() {
  if (!flash) return null;
  const line = h("p", { class: "flash", role: "status" }, flash);
  flash = "";
  return line;
}

// One crud: author, time, message, replies and expiry.
export function crudItem(a, { main = false, inThread = false } = {}) {
  const count = h("span", { class: "count" }, plural(a.replies_count, "reply", "replies"));
  const item = h(
    main ? "article" : "li",
    { class: main ? "crud crud-main" : "crud", "data-uuid": a.uuid },
    h("div", { class: hue(a.handle), "aria-hidden": "true" }, initials(plain(a.display_name), a.handle)),
    h(
      "div",
      { class: "crud-body" },
      h(
        "p",
        { class: "crud-head" },
        h(
          "a",
          { class: "who", href: userPath(a.handle), "data-nav": true },
          h("span", { class: "name", dir: "auto" }, plain(a.display_name)),
          " ",
          h("span", { class: "handle" }, `@${a.handle}`),
        ),
        " ",
        h(
          "a",
          { class: "when", href: statusPath(a), "data-nav": true },
          h("time", { datetime: a.created_at, title: exact(a.created_at) }, ago(a.created_at)),
        ),
      ),
      a.reply_to_activity_uuid && !inThread
        ? h("p", { class: "reply-to" },
            h("a", { href: parentPath(a), "data-nav": true }, "Replying to a crud"))
        : null,
      // dir="auto": each message runs in its own text's direction (Arabic right to left).
      h("p", { class: main ? "message message-main" : "message", dir: "auto" }, a.message),
      h(
        "p",
        { class: "crud-foot" },
        h("a", { class: "replies", href: statusPath(a), "data-nav": true }, icon("reply"), count),
        h(
          "span",
          { class: "expires", title: `Expires ${exact(a.expires_at)}`, "data-expires": a.expires_at },
          icon("clock"),
          expiresIn(a.expires_at),
        ),
      ),
    ),
  );
  if (Date.parse(a.expires_at) <= Date.now()) item.classList.add("expired");
  item.countEl = count;
  item.count = a.replies_count;
  return item;
}

// The relative times again, from their ISO values (the router runs it every 30 s and
// when the tab is shown again). An expired crud stays, marked: removing rows would move
// the reader's focus and scroll.
export function refreshTimes(now = Date.now()) {
  const main = document.getElementById("main");
  for (const time of main.querySelectorAll("time[datetime]")) {
    time.textContent = ago(time.dateTime, now);
  }
  for (const span of main.querySelectorAll(".expires[data-expires]")) {
    const iso = span.dataset.expires;
    span.lastChild.textContent = expiresIn(iso, now);
    if (Date.parse(iso) <= now) span.closest(".crud")?.classList.add("expired");
  }
}

// The reader's place on the page on screen: how many pages its list has loaded, and how
// far down it is. The router keeps it in the page's history entry as it changes, and
// hands it back (restoreNext) when Back or Forward returns there: the list loads as many
// pages again and scrolls to where the reader was, instead of starting over at the
// first page, at the top.
let pagesLoaded = 0;
let listsMade = 0; // which list is on screen: a load still running for an old one is not counted
let restoring = null;
let settling = false; // a place being restored, not yet reached: none to keep meanwhile
let placeChanged = () => {};
export const place = () => (settling ? null : { pages: pagesLoaded, scrollY: window.scrollY });
// Told when a page more has loaded (the router keeps the place; it hears scrolls itself).
export const onPlaceChanged = (listener) => (placeChanged = listener);
// The router, around each page it renders: a place is handed to the list the page makes
// as it starts (synchronously); a page without a list (sign-in) neither takes one nor
// leaves the last page's count behind for its own history entry.
export function restoreNext(saved) {
  pagesLoaded = 0;
  settling = false;
  restoring = saved && saved.pages > 0 ? saved : null;
}
// Once the page's view has started: a place not taken by a list goes. (Not `settling`,
// which its list may have just set: reset here, it was never on while a place loaded.)
export function restoreTaken() {
  pagesLoaded = 0;
  restoring = null;
}

// The row of `uuid` on a list, if it is there.
const rowOf = (list, uuid) => [...list.children].find((el) => el.dataset.uuid === uuid);

// A list that fills itself page by page, following the API's Link: rel="next".
// A row already on the list (the reader's own reply, appended when posted) moves to
// where the page puts it: each row once, in the API's order.
function pagedList({ path, list, status, more, emptyText, pick = (d) => d, render = crudItem }) {
  let next = path;
  let shown = 0;
  const label = more.textContent; // "Load more", "Load more replies": back after each load
  const mine = ++listsMade;
  const goal = restoring;
  restoring = null;
  pagesLoaded = 0;
  settling = Boolean(goal);
  async function load(first = false) {
    let data;
    try {
      data = await loadPage(first);
      if (first && goal) {
        while (data && next && listsMade === mine && pagesLoaded < goal.pages) {
          if (!(await loadPage())) break;
        }
      }
    } finally {
      if (first && goal) {
        // Once the page has put the list in place (a crud page adds its replies' list
        // after this load): scrolled earlier, a short page clamped it to the top.
        setTimeout(() => {
          // Its first page failed: still settling, so the place kept is not written over,
          // however the reader leaves (a link too), until a list is made again.
          if (listsMade !== mine || !data) return;
          settling = false;
          window.scrollTo(0, goal.scrollY);
          placeChanged();
        });
      }
    }
    return data;
  }
  async function loadPage(first = false) {
    // A disabled button loses the keyboard's focus (to the page's body): given back
    // after the load, or to the first new row once there is no more to load.
    const focused = document.activeElement === more;
    let firstNew = null;
    more.disabled = true;
    more.textContent = "Loading…";
    try {
      const { data, next: after } = await read(next, (e) => (status.textContent = e.message));
      const rows = pick(data);
      const onList = new Map([...list.children].map((el) => [el.dataset.uuid, el]));
      for (const row of rows) {
        const item = render(row);
        if (item.dataset.uuid) onList.get(item.dataset.uuid)?.remove();
        list.append(item);
        firstNew ??= item;
      }
      shown += rows.length;
      next = after;
      if (listsMade === mine) {
        pagesLoaded += 1;
        if (!settling) placeChanged();
      }
      status.className = "status";
      status.textContent = shown ? "" : emptyText;
      more.hidden = !next;
      return data;
    } catch (error) {
      status.className = "error";
      status.textContent = error.message;
      if (first) throw error;
      return null;
    } finally {
      more.disabled = false;
      more.textContent = label;
      if (focused && document.activeElement !== more) {
        if (!more.hidden) more.focus();
        else if (firstNew) {
          firstNew.tabIndex = -1;
          firstNew.focus();
        }
      }
    }
  }
  more.addEventListener("click", () => loadPage());
  return load;
}

function fieldError(id) {
  return h("p", { class: "field-error", id, hidden: true });
}

// Shows an API or Cognito error on its form: field by field for a 422.
function showErrors(form, error) {
  for (const el of form.querySelectorAll(".field-error")) el.hidden = true;
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const general = form.querySelector(".form-error");
  let first = null;
  for (const field of error?.fields || []) {
    const input = form.elements[field.field];
    const slot = input && form.querySelector(`#${input.getAttribute("data-error")}`);
    if (!slot) continue;
    input.setAttribute("aria-invalid", "true");
    slot.hidden = false;
    slot.textContent = field.message.charAt(0).toUpperCase() + field.message.slice(1) + ".";
    first ||= input;
  }
  // When the fields say what is wrong, the form need not say it again.
  general.textContent = error && !first ? error.message : "";
  if (first) first.focus();
}

function textField({ label, name, type = "text", hint, ...attrs }) {
  const id = uid(name);
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ");
  const control =
    type === "textarea"
      ? h("textarea", { id, name, "data-error": errorId, "aria-describedby": describedBy, ...attrs })
      : h("input", { id, name, type, "data-error": errorId, "aria-describedby": describedBy, ...attrs });
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    fieldError(errorId),
  );
}

// Read with the box's description (a span's aria-label is ignored), not live.
function counter(textarea, max) {
  const out = h("span", { class: "counter", id: `${textarea.id}-count` });
  textarea.setAttribute("aria-describedby", `${textarea.getAttribute("aria-describedby")} ${out.id}`);
  const update = () => {
    const used = [...textarea.value].length; // characters, as the API counts them
    out.textContent = `${used} / ${max}`;
    out.classList.toggle("over", used > max);
  };
  textarea.addEventListener("input", update);
  update();
  return out;
}

// A message over the limit is refused here, before sending, in the API's words: a long
// paste would otherwise travel to the server only to come back a 422, or a 413 when it
// is over the 16 kB a body may be.
function checkLength(textarea, max) {
  const used = [...textarea.value].length;
  if (used <= max) return;
  const error = new Error("");
  error.fields = [{ field: textarea.name, message: `message is ${used} characters; the most is ${max}` }];
  throw error;
}

// A second press of Enter on "Crud" or "Reply" just after a post was sent with the box
// it had emptied: the page said "must not be blank" of a post that had gone through.
// Such a press, on an empty box within this long of a post, is taken as the same press.
const REPEAT_PRESS_MS = 2000;
const pressedAgain = (textarea, sentAt) => !textarea.value.trim() && Date.now() - sentAt < REPEAT_PRESS_MS;

async function submitting(form, work) {
  const button = form.querySelector("button[type=submit]");
  const focused = document.activeElement; // the button, when pressed from the keyboard
  button.disabled = true;
  try {
    await work();
    showErrors(form, null);
  } catch (error) {
    showErrors(form, error);
    // A reply refused because its crud expired meanwhile: the crud shows it at once,
    // not "expires in 5 s" until the next 30 s refresh.
    refreshTimes();
  } finally {
    button.disabled = false;
    // Disabled, it lost the focus to the page's body: the reader's place, given back.
    if (focused?.isConnected && document.activeElement === document.body) focused.focus();
  }
}

function composeForm(onPosted) {
  const message = textField({
    label: "What's happening?",
    name: "message",
    type: "textarea",
    rows: 3,
    dir: "auto",
    hint: `Up to ${MESSAGE_MAX} characters.`,
    placeholder: "Say it. It expires.",
  });
  const textarea = message.querySelector("textarea");
  keepDraft(textarea, auth.current()?.handle, "compose"); // before the counter counts it
  const ttlId = uid("ttl");
  const ttl = h("select", { id: ttlId, name: "ttl", "data-error": `${ttlId}-error` },
    TTLS.map((v) => h("option", { value: v, selected: v === "7-days" }, TTL_WORDS[v])));
  const form = h(
    "form",
    { class: "card compose", "aria-label": "Post a crud", novalidate: true },
    message,
    h(
      "div",
      { class: "compose-row" },
      h("div", { class: "ttl" }, h("label", { for: ttlId }, "Expires after"), ttl),
      counter(textarea, MESSAGE_MAX),
      h("button", { type: "submit", class: "primary" }, "Crud"),
    ),
    fieldError(`${ttlId}-error`),
    h("p", { class: "form-error", role: "alert" }),
  );
  let sentAt = 0;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (pressedAgain(textarea, sentAt)) return;
    submitting(form, async () => {
      checkLength(textarea, MESSAGE_MAX);
      const { data } = await auth.write("/api/activities", { message: textarea.value, ttl: ttl.value });
      sentAt = Date.now();
      textarea.value = "";
      textarea.dispatchEvent(new Event("input"));
      onPosted(data);
    });
  });
  return form;
}

export async function feedPage(main, { handle } = {}, _navigate, canonical) {
  const list = h("ol", { class: "feed", "aria-label": "Cruds" });
  const status = statusLine("Loading…");
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const title = heading(handle ? `@${handle}` : "Home");
  const head = h("div", { class: "page-head" }, title,
    handle ? null : h("p", { class: "sub" }, "What people are saying, before it expires."));
  const signedIn = auth.current();
  replace(main, flashLine(), head);
  if (!handle && signedIn) {
    main.append(composeForm((crud) => {
      const item = crudItem(crud);
      item.classList.add("fresh");
      rowOf(list, crud.uuid)?.remove(); // sent again after a lost answer: listed since
      list.prepend(item);
      status.textContent = "Posted."; // the polite live region: said to screen readers
    }));
  }
  append(main, [list, status, more]);
  // The handle is the address's, not yet one the API knows: isolated, as users' text is.
  document.title = handle ? `@${isolate(handle)} · Cruddur` : "Cruddur";
  const load = pagedList({
    path: feedPath(handle),
    list,
    status,
    more,
    emptyText: handle ? `@${handle} has no cruds right now.` : "No cruds yet. Sign in and post the first one.",
  });
  try {
    const data = await load(true);
    if (!title.isConnected) return; // the reader has moved on to another page
    if (handle && data?.length) {
      // The handle as stored: the address takes it in any case (/@ANDREWBROWN).
      const stored = data[0].handle;
      title.textContent = plain(data[0].display_name);
      title.classList.add("person"); // two lines at most: a long name hid the whole page
      head.append(h("p", { class: "sub" }, `@${stored}`));
      document.title = `${isolate(data[0].display_name)} (@${stored}) · Cruddur`;
      if (stored !== handle) canonical?.(userPath(stored));
    }
  } catch (error) {
    if (error.status === 404 && handle && title.isConnected) {
      title.textContent = "No such user";
      status.className = "status";
      status.textContent = `Nobody on Cruddur has the handle @${isolate(handle)}.`;
      document.title = "No such user · Cruddur";
    } else if (title.isConnected) {
      more.hidden = true; // its "Load more" would ask for the page after one never read
      offerRetry(status, error);
    }
  }
}

function replyForm(parent, onReplied) {
  const message = textField({ label: "Your reply", name: "message", type: "textarea", rows: 2, dir: "auto",
    hint: `Up to ${REPLY_MAX} characters.` });
  const textarea = message.querySelector("textarea");
  keepDraft(textarea, auth.current()?.handle, `reply:${parent}`);
  const form = h(
    "form",
    { class: "card compose", "aria-label": "Reply", novalidate: true },
    message,
    h("div", { class: "compose-row" }, counter(textarea, REPLY_MAX),
      h("button", { type: "submit", class: "primary" }, "Reply")),
    h("p", { class: "form-error", role: "alert" }),
  );
  let sentAt = 0;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (pressedAgain(textarea, sentAt)) return;
    submitting(form, async () => {
      checkLength(textarea, REPLY_MAX);
      const { data, replayed } = await auth.write(`/api/activities/${parent}/reply`, { message: textarea.value });
      sentAt = Date.now();
      textarea.value = "";
      textarea.dispatchEvent(new Event("input"));
      onReplied(data, replayed);
    });
  });
  return form;
}

export async function crudPage(main, { uuid }, _navigate, canonical) {
  const title = heading("Crud");
  const status = statusLine("Loading…");
  const list = h("ol", { class: "feed replies-list", "aria-label": "Replies" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more replies");
  replace(main, flashLine(), h("div", { class: "page-head" }, title), status);
  document.title = "Crud · Cruddur";
  let parent = null;
  const load = pagedList({
    path: crudPath(uuid),
    list,
    status,
    more,
    emptyText: "No replies yet.",
    render: (reply) => crudItem(reply, { inThread: true }),
    pick: (data) => {
      if (!parent) {
        parent = crudItem(data.activity, { main: true });
        status.before(parent);
      }
      return data.replies;
    },
  });
  let data;
  try {
    data = await load(true);
  } catch (error) {
    if (!title.isConnected) return;
    if (error.status === 404 || error.status === 400) {
      title.textContent = "Crud not found";
      document.title = "Crud not found · Cruddur";
      status.className = "status";
      status.textContent = "This crud does not exist, or it has expired.";
    } else offerRetry(status, error);
    return;
  }
  if (!title.isConnected) return; // the reader has moved on to another page
  const a = data.activity;
  document.title = `${isolate(a.display_name)}: ${isolate([...a.message].slice(0, 40).join(""))} · Cruddur`;
  canonical(statusPath(a));
  const repliesTitle = h("h2", {}, "Replies");
  status.before(repliesTitle, list);
  status.after(more);
  if (auth.current()) {
    more.after(replyForm(a.uuid, async (reply, replayed) => {
      // Shown at once; if a page is still to come, it moves there when that page loads.
      // Sent again after a lost answer (replayed), it may be listed and counted already,
      // or counted and not listed (the crud read again, its reply on a page not loaded):
      // the count is read again rather than guessed.
      const listed = rowOf(list, reply.uuid);
      if (!listed) list.append(crudItem(reply, { inThread: true }));
      status.textContent = "Posted.";
      let count = parent.count + (listed ? 0 : 1);
      if (replayed) {
        try {
          count = (await read(crudPath(a.uuid))).data.activity.replies_count;
        } catch {
          return; // the count stays as it was read
        }
      }
      parent.count = count;
      parent.countEl.textContent = plural(count, "reply", "replies");
    }));
  } else {
    const signIn = `/signin?next=${encodeURIComponent(statusPath(a))}`; // back here after
    more.after(h("p", { class: "hint" }, h("a", { href: signIn, "data-nav": true }, "Sign in"), " to reply."));
  }
}

function authForm(label, fields, button, onSubmit, extra = []) {
  const form = h("form", { class: "card auth", "aria-label": label, novalidate: true },
    fields, h("p", { class: "form-error", role: "alert" }),
    h("button", { type: "submit", class: "primary" }, button), extra);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, () => {
      // Empty required fields are named here, before asking anyone.
      const missing = [...form.querySelectorAll("[required]")].filter((el) => !el.value.trim());
      if (missing.length) {
        const label = (el) => form.querySelector(`label[for="${el.id}"]`).textContent;
        const error = new Error("");
        error.fields = missing.map((el) => ({ field: el.name, message: `${label(el)} is needed` }));
        throw error;
      }
      return onSubmit(form.elements);
    });
  });
  return form;
}

// Where sign-in leads (?next=): a path on this site only ("/x", never "//host" or
// "/\host", which browsers take as another host, nor "/..//host"); else the home feed.
function nextPath(search = location.search) {
  const next = new URLSearchParams(search).get("next") || "";
  if (!/^\/(?![/\\])/.test(next)) return "/";
  const url = new URL(next, location.origin);
  return url.origin === location.origin && !url.pathname.startsWith("//") ? next : "/";
}

export async function signInPage(main, _params, navigate) {
  document.title = "Sign in · Cruddur";
  // Signed in, the sign-in page's history entry becomes the next page: Back does not
  // lead to the form again. Come by a link from that very page, it goes back to it: put
  // in the form's place, it was there twice in a row, and the first Back did nothing.
  const done = () => {
    const next = nextPath();
    if (history.state?.from === next) {
      // The form's entry becomes that page too: Forward would show the form again.
      history.replaceState(null, "", location.origin + next);
      history.back();
    } else navigate(next, { replace: true });
  };
  replace(main, flashLine(), heading("Sign in"));
  const mode = auth.mode();
  if (mode === "dev") {
    const select = h("select", { id: "dev-handle", name: "handle" });
    let listed = false; // the local users came (none may exist)
    main.append(
      h("p", { class: "hint" }, "Development sign-in: this server has no Cognito user pool, so you can act as any local user."),
      authForm("Sign in as a local user",
        h("div", { class: "field" }, h("label", { for: "dev-handle" }, "Sign in as"), select),
        "Sign in", async () => {
          // With no user listed, said here: sent, "" got the API's words for developers.
          if (!select.value) {
            // Not loaded (the database away): not a missing seed.
            throw new Error(listed
              ? "No local user to sign in as: load the seed users (bin/db-seed), then reload this page."
              : "The list of local users has not loaded yet: try again in a moment.");
          }
          await auth.signInDev(select.value);
          setFlash(`Signed in as @${select.value}.`);
          done();
        }),
    );
    try {
      const users = await auth.devUsers();
      listed = true;
      for (const user of users) {
        select.append(h("option", { value: user.handle }, `${isolate(user.display_name)} (@${user.handle})`));
      }
      if (!users.length && select.isConnected) {
        main.append(statusLine("No local users yet: load the seed users (bin/db-seed), then reload this page.", "error"));
      }
    } catch (error) {
      if (select.isConnected) {
        const line = statusLine(error.message, "error");
        main.append(line);
        offerRetry(line, error);
      }
    }
    return;
  }
  if (mode === "none") {
    main.append(statusLine("Sign-in is not available here: this server has no Cognito user pool, and development sign-in works only from the machine the server runs on.", "error"));
    return;
  }
  main.append(
    authForm("Sign in", [
      textField({ label: "Email", name: "email", type: "email", autocomplete: "username", value: pendingEmail, required: true }),
      textField({ label: "Password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    ], "Sign in", async (f) => {
      try {
        await auth.signInCognito(f.email.value.trim(), f.password.value);
      } catch (error) {
        if (error.type === "UserNotConfirmedException") {
          pendingEmail = f.email.value.trim();
          setFlash(error.message);
          navigate("/confirm");
          return;
        }
        throw error;
      }
      setFlash("You are signed in.");
      done();
    }),
    h("p", { class: "hint" }, "New here? ", h("a", { href: "/signup", "data-nav": true }, "Create an account"), ". Have a code? ", h("a", { href: "/confirm", "data-nav": true }, "Confirm your account"), "."),
  );
}

const HANDLE = /^[A-Za-z0-9_.+-]{1,64}$/; // the schema's users_handle_check

// Whether a user has the handle (in any case, as the API looks it up): asked before
// Cognito makes an account the sign-up trigger would refuse a profile ("taken"). Not
// known (the API away): not taken, as far as the page can tell; the trigger decides.
async function handleTaken(handle) {
  try {
    await request(`${feedPath(handle)}?limit=1`);
    return true;
  } catch {
    return false; // 404: nobody has it; anything else: not known here
  }
}

// Signed in already (Back to the sign-up or confirm form after signing in): said, with
// where to go, not a form asking to make or confirm an account again.
function signedInAlready(main) {
  const who = auth.current();
  if (!who) return false;
  main.append(h("p", { class: "status" }, `You are signed in as @${who.handle}. `,
    h("a", { href: "/", "data-nav": true }, "Go to the home feed"), "."));
  return true;
}

export async function signUpPage(main, _params, navigate) {
  document.title = "Sign up · Cruddur";
  replace(main, heading("Create your account"));
  if (signedInAlready(main)) return;
  if (auth.mode() !== "cognito") {
    main.append(statusLine("Sign-up needs a Cognito user pool. Locally, use Sign in to act as a seed user.", "status"));
    return;
  }
  main.append(authForm("Sign up", [
    textField({ label: "Name", name: "name", autocomplete: "name", required: true, maxlength: 256 }),
    textField({ label: "Handle", name: "handle", autocomplete: "username", required: true, maxlength: 64,
      hint: "Letters, digits and . _ + - (your page will be /@handle)." }),
    textField({ label: "Email", name: "email", type: "email", autocomplete: "email", required: true }),
    textField({ label: "Password", name: "password", type: "password", autocomplete: "new-password", required: true,
      hint: "At least 8 characters, with upper and lower case letters, a digit and a symbol." }),
  ], "Sign up", async (f) => {
    const email = f.email.value.trim();
    // The schema's rule (users_handle_check), checked before Cognito makes an account the
    // sign-up trigger would then refuse a profile for good ("@yara", typed as the page
    // shows handles, was taken, and every post was a 403). The "@" the page shows is not
    // part of it.
    const handle = f.handle.value.trim().replace(/^@/, "");
    if (!HANDLE.test(handle)) {
      const error = new Error("");
      error.fields = [{ field: "handle", message: "Use 1 to 64 letters, digits and . _ + - only (no @ or spaces)" }];
      throw error;
    }
    if (await handleTaken(handle)) {
      const error = new Error("");
      error.fields = [{ field: "handle", message: `@${handle} is taken: pick another` }];
      throw error;
    }
    await cognito.signUp({ email, password: f.password.value, name: f.name.value.trim(), handle });
    pendingEmail = email;
    setFlash(`We sent a confirmation code to ${email}.`);
    navigate("/confirm");
  }));
}

export async function confirmPage(main, _params, navigate) {
  document.title = "Confirm your account · Cruddur";
  replace(main, flashLine(), heading("Confirm your account"));
  if (signedInAlready(main)) return;
  if (auth.mode() !== "cognito") {
    main.append(statusLine("Nothing to confirm: this server has no Cognito user pool.", "status"));
    return;
  }
  const note = statusLine("");
  const resend = h("button", { type: "button", class: "link" }, "Send a new code");
  const form = authForm("Confirm your account", [
    textField({ label: "Email", name: "email", type: "email", autocomplete: "username", value: pendingEmail, required: true }),
    textField({ label: "Confirmation code", name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true }),
  ], "Confirm", async (f) => {
    pendingEmail = f.email.value.trim();
    await cognito.confirm(pendingEmail, f.code.value.trim());
    setFlash("Your account is confirmed. Sign in to start crudding.");
    navigate("/signin");
  }, [resend, note]);
  resend.addEventListener("click", async () => {
    try {
      await cognito.resendCode(form.elements.email.value.trim());
      note.textContent = "A new code is on its way.";
    } catch (error) {
      note.textContent = error.message;
    }
  });
  main.append(form);
}

export function notFoundPage(main) {
  document.title = "Not found · Cruddur";
  replace(main, heading("Page not found"),
    h("p", { class: "status" }, "There is nothing at this address. ", h("a", { href: "/", "data-nav": true }, "Go to the home feed"), "."));
}
