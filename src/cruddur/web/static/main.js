// The router: the original's paths, rendered without reloading; links stay real links.

import * as auth from "./auth.js";
import { h, replace } from "./dom.js";
import { forgetDrafts } from "./drafts.js";
import * as views from "./views.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");

const ROUTES = [
  [/^\/$/, views.feedPage],
  [/^\/@([^/]+)\/status\/([^/]+)$/, views.crudPage, ["handle", "uuid"]],
  [/^\/status\/([^/]+)$/, views.crudPage, ["uuid"]], // a reply's parent, author unknown
  [/^\/@([^/]+)$/, views.feedPage, ["handle"]],
  [/^\/signin$/, views.signInPage],
  [/^\/signup$/, views.signUpPage],
  [/^\/confirm$/, views.confirmPage],
];

let rendered = null; // the path on screen

// A whole address: "//@x" alone names host "@x", which the history refuses (throws).
const here = (path) => location.origin + path;

// The route's parameters, decoded; null when one is not valid percent-encoding (/@%ZZ),
// an address that names nothing.
function decoded(match, names) {
  const params = {};
  try {
    names.forEach((name, i) => (params[name] = decodeURIComponent(match[i + 1])));
  } catch (error) {
    if (error instanceof URIError) return null;
    throw error;
  }
  return params;
}

// A view that finds its page has another address (a crud under its author's handle)
// moves the address there; the router must know it, or a later jump within the page
// (the skip link) would look like a new page and render it again.
function canonical(path) {
  if (location.pathname === path) return;
  history.replaceState(null, "", here(path));
  rendered = path;
}

function render(focus, place = null) {
  // One trailing slash (/@handle/, /signin/) names the same page: the address drops it.
  if (/[^/]\/$/.test(location.pathname)) {
    history.replaceState(history.state, "", here(location.pathname.slice(0, -1) + location.search));
  }
  // "/%40handle" (a link-rewriter's encoding of the @): the server serves it as the
  // page; the address becomes "/@handle", which the routes know.
  if (/^\/%40/i.test(location.pathname)) {
    history.replaceState(history.state, "", here("/@" + location.pathname.slice(4) + location.search));
  }
  const path = location.pathname;
  rendered = path;
  views.restoreNext(place); // taken by the list the view makes as it starts, if any
  try {
    for (const [pattern, view, names = []] of ROUTES) {
      const match = pattern.exec(path);
      if (!match) continue;
      const params = decoded(match, names);
      if (!params) break;
      view(main, params, navigate, canonical);
      if (focus) main.querySelector("h1")?.focus();
      return;
    }
    views.notFoundPage(main);
  } finally {
    views.restoreTaken(); // a view without a list leaves no place for the next page
  }
}

// The place on the page on screen (views.place), kept in its history entry as it
// changes: Back and Forward leave no moment to save it (when popstate fires, the entry
// is already the next one).
let placeTimer = null;
function keepPlace() {
  clearTimeout(placeTimer);
  const now = views.place();
  if (now && location.pathname === rendered) {
    history.replaceState({ ...history.state, place: now }, "");
  }
}
// A scroll, kept once it stops: a replaceState per scroll event, browsers throttle.
window.addEventListener(
  "scroll",
  () => {
    clearTimeout(placeTimer);
    placeTimer = setTimeout(keepPlace, 150);
  },
  { passive: true },
);
views.onPlaceChanged(keepPlace);

// `replace`: the page on screen leaves no history entry (a sign-in form, once used).
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", here(path));
  else {
    keepPlace(); // the place on the page left behind, for Back to come to
    // The page it came from, for sign-in to go back to rather than add it again.
    history.pushState({ from: rendered }, "", here(path));
  }
  render(true);
  window.scrollTo(0, 0);
}

function renderNav() {
  const who = auth.current();
  if (who) {
    replace(
      nav,
      h("a", { href: `/@${encodeURIComponent(who.handle)}`, "data-nav": true, class: "me" }, `@${who.handle}`),
      h("button", { type: "button", class: "ghost", on: { click: signOut } }, "Sign out"),
    );
  } else {
    replace(
      nav,
      h("a", { href: "/signin", "data-nav": true, "data-back-here": true, class: "button" }, "Sign in"),
      auth.mode() === "cognito" ? h("a", { href: "/signup", "data-nav": true, class: "button ghost" }, "Sign up") : null,
    );
  }
}

function signOut() {
  auth.signOut();
  forgetDrafts();
  views.setFlash("You are signed out.");
  navigate("/");
}

// Same-page links marked data-nav move without a reload (new tab and friends still work).
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(withNext(link));
});

// The header's "Sign in" leads back to the page it was pressed on (a crud whose reply
// was refused when the sign-in ran out, say), as a page's own "Sign in to reply" does.
function withNext(link) {
  const href = link.getAttribute("href");
  const from = location.pathname;
  if (!link.hasAttribute("data-back-here") || from === "/" || AUTH_PAGES.test(from)) return href;
  return `${href}?next=${encodeURIComponent(from)}`;
}
const AUTH_PAGES = /^\/(signin|signup|confirm)$/;
// Back and forward; a jump within the page (the skip link's #main) is not a new page.
// The page comes back as the reader left it (its pages loaded, scrolled there): the
// browser's own scroll restoration would run before the list has loaded again.
history.scrollRestoration = "manual";
window.addEventListener("popstate", () => {
  if (location.pathname === rendered) return;
  clearTimeout(placeTimer); // the page left: its last scroll would land on this entry
  render(true, history.state?.place);
});
// "just now", "expires in 1 min": kept true while the page stays open.
setInterval(() => views.refreshTimes(), 30_000);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") views.refreshTimes();
});
auth.onChange(renderNav);
// Back to a page the browser kept whole: drawn afresh if the tab's sign-in changed since
// (signed out, or someone else), its drafts and posting hands gone with the reload.
window.addEventListener("pageshow", (event) => {
  if (event.persisted && auth.changedInTab()) location.reload();
});
// Drawn again (Try again, back online) with the place kept, if any. A reader typing in
// the post box stays in it, at the end of the draft (drafts.js gives it back), not sent
// to the page's heading mid-word.
views.onRetry(() => {
  const typing = document.activeElement?.closest("form.compose") ? document.activeElement : null;
  render(!typing, history.state?.place);
  const box = typing && main.querySelector("form.compose textarea");
  if (box) {
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }
});
renderNav();
if (auth.endedOnLoad) views.setFlash("Your sign-in ran out. Sign in again to post.");
render(false);
