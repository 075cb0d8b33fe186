"""Cruddur in a real browser: Debian's headless Chromium against `cruddur serve` on the
real database. One browser for the whole module; each test is one user's story."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import user_pool
from psycopg import sql
from replica_support import ReplicaPair
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from server_support import free_port, request
from web_support import screenshot_folder, serving, start_chromium

from cruddur.aws import client
from cruddur.config import Settings
from cruddur.db import Db
from cruddur.dev_keys import DevKeys
from cruddur.lambdas import post_confirmation
from cruddur.ops import loading
from cruddur.urls import with_database

pytestmark = pytest.mark.xdist_group("browser")  # one browser, on one test worker

HOSTILE = '<script>alert("x")</script><img src=x onerror="document.title=\'pwned\'">'
# Older cruds so that the home feed has a second page (20 a page).
CHATTER = [
    ("bayko", "Deployed the backend on a Friday. Living dangerously."),
    ("londo", "The avalanche has already started. It is too late for the pebbles to vote."),
    ("andrewbrown", "Week 4 done: Postgres is in, and the seed cruds show up!"),
    ("bayko", "Who else keeps their cruds short? 280 characters is plenty."),
    ("londo", "I was born to be an emperor, not a backend engineer."),
    ("andrewbrown", "Reminder: every crud expires. Say it, then let it go."),
]


def _wait(browser, condition, timeout: float = 10):
    # An element may be replaced between finding and reading it (the page re-renders).
    wait = WebDriverWait(browser, timeout, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition)


def _css(browser, selector: str):
    return browser.find_element("css selector", selector)


def _all(browser, selector: str):
    return browser.find_elements("css selector", selector)


def _messages(browser, selector: str = "ol.feed > li .message") -> list[str]:
    return [el.text for el in _all(browser, selector)]


def _shown(browser, selector: str, text: str | None = None):
    """Waits until an element matching `selector` (containing `text`) is on the page."""

    def found(driver):
        for el in driver.find_elements("css selector", selector):
            if text is None or text in el.text:
                return el
        return False

    return _wait(browser, found)


def _console_problems(browser, allowed: tuple[str, ...] = ()) -> list[str]:
    """Errors in the console since the last call, except network failures we caused."""
    problems = []
    for entry in browser.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" and any(s in entry["message"] for s in allowed):
            continue
        problems.append(entry["message"])
    return problems


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium):
    """The module's browser, its console log emptied for this test."""
    chromium.get_log("browser")
    return chromium


@pytest.fixture(scope="module")
def web_db(admin: psycopg.Connection, server_url: str) -> Iterator[str]:
    """A seeded database with 24 older cruds (for paging) and one hostile crud."""
    name = f"cruddur_test_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        with Db(url) as db:
            loading.load(db, loading.SCHEMA)
            loading.load(db, loading.SEED)
        with psycopg.connect(url) as conn:
            for n in range(24):
                handle, message = CHATTER[n % len(CHATTER)]
                conn.execute(
                    "INSERT INTO activities (user_uuid, message, created_at, expires_at)"
                    " SELECT uuid, %s, now() - %s * interval '37 minute' - interval '2 hour',"
                    " now() + interval '5 day' FROM users WHERE handle = %s",
                    [message, n, handle],
                )
            conn.execute(
                "INSERT INTO activities (user_uuid, message, created_at, expires_at)"
                " SELECT uuid, %s, now() - interval '25 minute', now() + interval '3 hour'"
                " FROM users WHERE handle = 'bayko'",
                [HOSTILE],
            )
        yield url
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def site(web_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cruddur serve` with the dev key pair (no Cognito pool)."""
    home = tmp_path_factory.mktemp("web-home")
    with serving({"CONNECTION_URL": web_db, "CRUDDUR_HOME": str(home)}) as base:
        yield base


@pytest.fixture
def shots(tmp_path):
    return screenshot_folder(tmp_path)


def _phone(browser, on: bool, width: int = 375) -> None:
    if on:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 812, "deviceScaleFactor": 2, "mobile": True},
        )
    else:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _no_horizontal_scroll(browser) -> bool:
    return browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )


def test_home_feed_pages_and_shows_hostile_text_as_text(browser, site: str, shots) -> None:
    browser.get(site + "/")
    first = _shown(browser, "ol.feed > li", "This was imported as seed data!")
    assert "Andrew Brown" in first.text and "@andrewbrown" in first.text
    assert "2 replies" in first.text and "expires in 10 d" in first.text
    assert "10 min ago" in first.text
    newest = _all(browser, "ol.feed > li")[0]  # a reply to it, 8 minutes ago
    assert "Welcome to the feed." in newest.text and "Replying to a crud" in newest.text
    assert _css(first, "a.who").get_attribute("href") == f"{site}/@andrewbrown"
    # The hostile crud is its characters, not markup: no image, no script ran.
    hostile = _shown(browser, "ol.feed > li", "<script>")
    assert _css(hostile, ".message").text == HOSTILE
    assert not _all(browser, "main img") and not _all(browser, "main script")
    assert browser.title == "Cruddur"
    # Marks stacked on a letter ("Zalgo") drew over the lines above and below: clipped.
    clipping = "const s = getComputedStyle(arguments[0]); return [s.overflow, s.overflowClipMargin]"
    assert browser.execute_script(clipping, _css(hostile, ".message")) == ["clip", "6px"]
    browser.save_screenshot(str(shots / "home-desktop.png"))

    assert len(_all(browser, "ol.feed > li")) == 20
    more = _css(browser, "button.more")
    assert more.is_displayed()
    more.click()
    # The seed's 2 cruds and 2 replies, and 25 more.
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    assert not more.is_displayed()  # the API sent no rel="next": nothing more
    messages = _messages(browser)
    assert len(set(messages)) < len(messages) == 29  # the chatter repeats, rows do not
    uuids = [li.get_attribute("data-uuid") for li in _all(browser, "ol.feed > li")]
    assert len(set(uuids)) == 29

    _phone(browser, True)
    try:
        browser.get(site + "/")
        _shown(browser, "ol.feed > li")
        assert _no_horizontal_scroll(browser)
        assert browser.execute_script("return window.innerWidth") == 375
        browser.save_screenshot(str(shots / "home-phone.png"))
    finally:
        _phone(browser, False)
    assert _console_problems(browser) == []


def test_user_page_and_unknown_user(browser, site: str) -> None:
    browser.get(site + "/@londo")
    _shown(browser, "ol.feed > li")
    ActionChains(browser).send_keys(Keys.TAB).perform()  # the first stop: skip to content
    assert browser.switch_to.active_element.text == "Skip to content"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    assert _css(browser, "h1").text == "Londo Mollari"
    handles = {el.text for el in _all(browser, "ol.feed > li .handle")}
    assert handles == {"@londo"}
    assert len(_all(browser, "ol.feed > li")) == 10  # the seed's crud and reply, 8 chatter

    # The handle comes from the address, so it is isolated (FSI … PDI) as users' text is,
    # its direction controls dropped (no handle has any): a right-to-left override in a
    # crafted link, even after a PDI, cannot turn the words after it around.
    status = "return document.querySelector('main .status').textContent"
    crafted = [("%E2%80%AEevil", "evil"), ("%E2%81%A9%E2%80%AEevil", "evil")]
    for path, handle in [("nobody", "nobody"), *crafted]:
        browser.get(f"{site}/@{path}")
        _shown(browser, "main .status", "Nobody on Cruddur has the handle @")
        said = browser.execute_script(status)
        assert said == f"Nobody on Cruddur has the handle @\u2068{handle}\u2069."
        assert _css(browser, "h1").text == "No such user"
    browser.get(site + "/no/such/page")
    _shown(browser, "h1", "Page not found")
    assert _console_problems(browser, allowed=("404",)) == []
    # The @ percent-encoded (mail and chat link-rewriters do it): the server served the
    # page, which said "Page not found".
    browser.get(site + "/%40londo")
    _shown(browser, "ol.feed > li")
    assert _css(browser, "h1").text == "Londo Mollari"
    assert browser.execute_script("return location.pathname") == "/@londo"


def test_sign_in_with_the_users_list_not_loaded_does_not_blame_the_seed(browser, site: str) -> None:
    # The database away: the list of local users failed to load, and "Sign in" then said
    # to load the seed users, which were there.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/dev/users*"]})
    try:
        browser.get(site + "/signin")
        _shown(browser, "main > p.error", "Cannot reach the Cruddur API")
        _css(browser, "form button[type=submit]").click()
        said = _shown(browser, "form .form-error", "has not loaded yet").text
        assert "bin/db-seed" not in said, said
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})


def test_an_address_with_a_trailing_slash_is_the_same_page(browser, site: str) -> None:
    # /@andrewbrown/ and /signin/ said "Page not found".
    for path, shown in (("/@andrewbrown/", "ol.feed > li"), ("/signin/", "select#dev-handle")):
        browser.get(site + path)
        _shown(browser, shown)
        assert browser.execute_script("return location.pathname") == path[:-1]
    assert _console_problems(browser) == []


def test_an_address_with_a_leading_double_slash_is_page_not_found(browser, site: str) -> None:
    # https://site/ joined with /@andrewbrown/ stayed on "Loading…" for good: dropping
    # the trailing slash gave "//@andrewbrown", which the history took for host
    # "@andrewbrown"'s address and refused (a DOMException). The server answers such a
    # path 404 (test_web_serving.py), and the page says so.
    for path in ("//@andrewbrown/", "//signin/", "//x/"):
        browser.get(site + path)
        _shown(browser, "h1", "Page not found")
        assert browser.execute_script("return location.pathname") == path[:-1]
    assert _console_problems(browser, allowed=("404",)) == []


def test_the_longest_handle_fits_a_phone(browser, site: str, web_db: str) -> None:
    # 64 characters without a space: the longest handle the schema allows. A line that
    # cannot wrap makes a phone zoom the whole page out.
    handle = "h" * 64
    with psycopg.connect(web_db) as conn:
        conn.execute(
            "WITH u AS (INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Long Handle', %s, 'long@example.com', 'MOCK-long') RETURNING uuid)"
            " INSERT INTO activities (user_uuid, message) SELECT uuid, 'Short.' FROM u",
            [handle],
        )
    _phone(browser, True)
    try:
        for path, shown in [(handle, "ol.feed > li"), ("x" * 64, "main .status")]:
            browser.get(f"{site}/@{path}")
            _shown(browser, shown, "Short." if path == handle else "Nobody on Cruddur")
            assert browser.execute_script("return window.innerWidth") == 375, path
            assert _no_horizontal_scroll(browser), path
    finally:
        _phone(browser, False)
        with psycopg.connect(web_db) as conn:  # its crud goes with it
            conn.execute("DELETE FROM users WHERE handle = %s", [handle])


_WHOLLY_SHOWN = """
const [handle, row] = arguments, box = handle.getBoundingClientRect(), in_row =
  row.getBoundingClientRect();
return box.width > 0 && box.left >= in_row.left && box.right <= in_row.right
  && handle.scrollWidth <= handle.clientWidth;
"""


def test_a_long_name_never_hides_the_handle(browser, site: str, web_db: str) -> None:
    # A review: on a desktop the name and the handle were cut short as one line, so a
    # name of over ~45 characters hid the handle: "Andrew Brown" and 120 blank Braille
    # cells read as Andrew Brown's crud, with his initials. The name is cut; the handle
    # is shown whole, at any width, a 64-character one too.
    users = [
        ("mallory", "Andrew Brown" + "\u2800" * 120),
        ("w" * 64, "W" * 256),
    ]
    with psycopg.connect(web_db) as conn:
        for handle, name in users:
            conn.execute(
                "WITH u AS (INSERT INTO users (display_name, handle, email, cognito_user_id)"
                " VALUES (%s, %s, %s, %s) RETURNING uuid)"
                " INSERT INTO activities (user_uuid, message) SELECT uuid, 'Official.' FROM u",
                [name, handle, f"{handle[:8]}@example.com", f"MOCK-{handle[:8]}"],
            )
    try:
        for width in (None, 800, 375, 320):
            _phone(browser, width is not None, width=width or 375)
            for handle, _ in users:
                browser.get(f"{site}/@{handle}")
                item = _shown(browser, "ol.feed > li", "Official.")
                shown = browser.execute_script(_WHOLLY_SHOWN, _css(item, ".handle"), item)
                assert shown, (width, handle)
                assert _no_horizontal_scroll(browser), (width, handle)
                # The page's heading, the name, takes two lines at most: 256 characters
                # filled a phone's first screen, the handle under it out of sight.
                _shown(browser, ".page-head .sub", f"@{handle}")
                lines = browser.execute_script(
                    "const h = document.querySelector('.page-head h1');"
                    "return h.getBoundingClientRect().height"
                    " / parseFloat(getComputedStyle(h).lineHeight)"
                )
                assert lines < 2.5, (width, handle, lines)
    finally:
        _phone(browser, False)
        with psycopg.connect(web_db) as conn:  # their cruds go with them
            conn.execute("DELETE FROM users WHERE handle = ANY(%s)", [[h for h, _ in users]])


def test_signed_in_pages_fit_a_phone(browser, site: str, web_db: str) -> None:
    # Signed in, the header (logo, handle, "Sign out") was wider than a 375 px screen:
    # 388 px for @andrewbrown, 399 for a long handle, "Sign out" broken over two lines.
    handle = "g" * 64
    with psycopg.connect(web_db) as conn:
        conn.execute(
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Long Handle', %s, 'long2@example.com', 'MOCK-long2')",
            [handle],
        )
    sign_out = "return document.querySelector('#nav button').getBoundingClientRect().height"
    _phone(browser, True)
    try:
        for who in ("andrewbrown", handle):
            _sign_in_as(browser, site, who)
            for path in ("/", "/@andrewbrown"):
                browser.get(site + path)
                _shown(browser, "ol.feed > li")
                assert browser.execute_script("return window.innerWidth") == 375
                assert _no_horizontal_scroll(browser), (who, path)
                assert browser.execute_script(sign_out) < 48, (who, path)  # one line
            _css(browser, "#nav button").click()  # sign out
            _shown(browser, ".flash", "You are signed out.")
    finally:
        _phone(browser, False)
        with psycopg.connect(web_db) as conn:
            conn.execute("DELETE FROM users WHERE handle = %s", [handle])


def test_the_handle_is_readable_at_320_px(browser, site: str) -> None:
    # At 320 px (the narrowest width a page must reflow to) @andrewbrown was 20 px wide:
    # "@…". The logo keeps its mark there; its word stays the link's accessible name.
    _sign_in_as(browser, site, "andrewbrown")
    _phone(browser, True, width=320)
    try:
        browser.get(site + "/")
        _shown(browser, "ol.feed > li")
        me = _css(browser, "#nav .me")
        shown = browser.execute_script(
            "return arguments[0].scrollWidth <= arguments[0].clientWidth", me
        )
        assert shown, "the handle is cut"
        assert _no_horizontal_scroll(browser)
        assert _css(browser, ".brand").get_attribute("textContent").endswith("Cruddur")
    finally:
        _phone(browser, False)
        _css(browser, "#nav button").click()  # sign out
        _shown(browser, ".flash", "You are signed out.")


_LEFT_TO_RIGHT = """
const text = arguments[0].firstChild, range = document.createRange();
const left = (i) => { range.setStart(text, i); range.setEnd(text, i + 1);
                      return range.getBoundingClientRect().left; };
return left(0) < left(text.length - 1);
"""


# The direction controls that reach past their own text: embeddings, overrides, isolates.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def test_a_name_with_a_direction_override_cannot_reverse_the_handle(
    browser, site: str, web_db: str
) -> None:
    # A display name is the user's own text (Cognito's `name`): one that ends in U+202E
    # (right-to-left override) turned everything after it in the line around, so the
    # handle beside it read backwards ("@nworbwerdna") and could pass for another's.
    # Isolated, it still could: a PDI (U+2069) before the override closed the isolate
    # early, and the row read "Andrew Brown andrewbrown@", the tab "… · (yrollam@)".
    # The page drops such controls from names wherever it shows them.
    users = [
        ("nworbwerdna", "Andrew Brown\u2069\u202e", "Andrew Brown"),
        ("mallory", "Mallory \u202e", "Mallory "),
    ]
    with psycopg.connect(web_db) as conn:
        for handle, name, _ in users:
            conn.execute(
                "WITH u AS (INSERT INTO users (display_name, handle, email, cognito_user_id)"
                " VALUES (%s, %s, %s, %s) RETURNING uuid)"
                " INSERT INTO activities (user_uuid, message) SELECT uuid, 'Trust me.' FROM u",
                [name, handle, f"{handle}@example.com", f"MOCK-{handle}"],
            )
    text = "return arguments[0].textContent"
    try:
        for handle, _, shown in users:
            browser.get(f"{site}/@{handle}")
            item = _shown(browser, "ol.feed > li", "Trust me.")
            for part in (".handle", ".when time"):
                assert browser.execute_script(_LEFT_TO_RIGHT, _css(item, part)), (handle, part)
            assert browser.execute_script(text, _css(item, ".name")) == shown
            assert not _BIDI_CONTROLS.search(_css(browser, "h1").get_attribute("textContent"))
            assert browser.title == f"\u2068{shown}\u2069 (@{handle}) · Cruddur"
        browser.get(site + "/signin")
        option = _shown(browser, "#dev-handle option[value=nworbwerdna]")
        said = browser.execute_script(text, option)
        assert said == "\u2068Andrew Brown\u2069 (@nworbwerdna)"
    finally:
        with psycopg.connect(web_db) as conn:  # their cruds go with them
            conn.execute("DELETE FROM users WHERE handle IN ('mallory', 'nworbwerdna')")
    assert _console_problems(browser) == []


def test_a_right_to_left_crud_runs_right_to_left(browser, site: str, web_db: str) -> None:
    # The message had no dir: an Arabic crud was laid out left to right, its "!" at the
    # right end. With dir="auto" each message (and name) takes its own text's direction.
    with psycopg.connect(web_db) as conn:
        conn.execute(
            "WITH u AS (INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('سارة', 'sara', 'sara@example.com', 'MOCK-sara')"
            " RETURNING uuid)"
            " INSERT INTO activities (user_uuid, message, created_at)"
            " SELECT uuid, m, now() - n * interval '1 minute' FROM u,"
            " (VALUES ('مرحبا بالعالم!', 1),"
            " ('Hello, world!', 2)) AS c (m, n)"
        )
    direction = "return getComputedStyle(arguments[0]).direction"
    try:
        browser.get(site + "/@sara")
        arabic = _shown(browser, "ol.feed > li", "مرحبا")
        english = _shown(browser, "ol.feed > li", "Hello, world!")
        assert browser.execute_script(direction, _css(arabic, ".message")) == "rtl"
        assert browser.execute_script(direction, _css(arabic, ".name")) == "rtl"
        assert browser.execute_script(direction, _css(english, ".message")) == "ltr"
        _css(arabic, "a.when").click()
        main = _css(_shown(browser, "article.crud-main"), ".message-main")
        assert browser.execute_script(direction, main) == "rtl"
    finally:
        with psycopg.connect(web_db) as conn:  # its cruds go with it
            conn.execute("DELETE FROM users WHERE handle = 'sara'")
    assert _console_problems(browser) == []


def test_relative_times_keep_up_and_an_expired_crud_is_marked(
    browser, site: str, web_db: str
) -> None:
    # The times were written once: "just now" and "expires in 6 s" stayed so, and a crud
    # that had expired kept its countdown. The page now writes them again every 30 s and
    # when the tab is shown again (here: a visibilitychange, not 30 s of waiting).
    with psycopg.connect(web_db) as conn:
        conn.execute(
            "WITH u AS (INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Brief', 'brief', 'brief@example.com', 'MOCK-brief') RETURNING uuid)"
            " INSERT INTO activities (user_uuid, message, created_at, expires_at)"
            " SELECT uuid, 'Gone soon.', now() - interval '35 second',"
            " now() + interval '6 second' FROM u"
        )
    inserted = time.monotonic()
    try:
        browser.get(site + "/@brief")
        row = _shown(browser, "ol.feed > li", "Gone soon.")
        assert _css(row, "time").text == "just now"
        assert re.fullmatch(r"expires in [1-6] s", _css(row, ".expires").text)
        assert "expired" not in row.get_attribute("class")
        time.sleep(max(0, inserted + 11 - time.monotonic()))  # 46 s old, expired
        browser.execute_script("document.dispatchEvent(new Event('visibilitychange'))")
        assert re.fullmatch(r"4[6-9] s ago", _css(row, "time").text)
        assert _css(row, ".expires").text == "expired"
        assert "expired" in row.get_attribute("class")  # greyed, still in its place
        assert _all(browser, "ol.feed > li") == [row]
    finally:
        with psycopg.connect(web_db) as conn:  # its crud goes with it
            conn.execute("DELETE FROM users WHERE handle = 'brief'")
    assert _console_problems(browser) == []


@pytest.mark.parametrize("start", ["/", "/@londo"])
def test_back_after_signing_in_leaves_the_page_signed_in_on(browser, site: str, start: str) -> None:
    # A review: the sign-in form's history entry became the page it led back to, which
    # was then there twice in a row, and the first Back did nothing.
    browser.get(site + "/@mollari" if start == "/" else site + "/")
    browser.get(site + start)
    _shown(browser, "ol.feed > li")
    _css(browser, "#nav a[href='/signin']").click()
    _choose_dev_user(browser, "andrewbrown")
    _wait(browser, lambda d: d.execute_script("return location.pathname") == start)
    _shown(browser, "ol.feed > li")
    try:
        browser.back()
        before = "/@mollari" if start == "/" else "/"
        _wait(browser, lambda d: d.execute_script("return location.pathname") == before)
        # Forward, and Forward again to the form's entry: not the form again (the entry
        # was left ahead as it was, a review found).
        browser.forward()
        _wait(browser, lambda d: d.execute_script("return location.pathname") == start)
        browser.forward()
        time.sleep(0.3)
        assert browser.execute_script("return location.pathname") == start
        assert not _all(browser, "select#dev-handle")
    finally:
        browser.execute_script("sessionStorage.removeItem('cruddur.session')")  # signed out


def test_a_page_whose_scripts_never_load_says_to_reload(browser, site: str) -> None:
    # A script that failed to load (a 404 from a server restarted with other files) left
    # "Loading…" for good, with nothing to say why or what to do.
    late = "return getComputedStyle(document.querySelector('.status.late')).visibility"
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/views.js"]})
    try:
        browser.get(site + "/")
        _shown(browser, "main .status", "Loading…")
        assert browser.execute_script(late) == "hidden"  # not at once
        browser.execute_cdp_cmd("Animation.enable", {})
        browser.execute_cdp_cmd("Animation.setPlaybackRate", {"playbackRate": 1000})
        _wait(browser, lambda d: d.execute_script(late) == "visible")
        assert "Reload the page" in _css(browser, "main").text
    finally:
        browser.execute_cdp_cmd("Animation.setPlaybackRate", {"playbackRate": 1})
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    browser.get(site + "/")  # loaded: the line is gone with "Loading…"
    _shown(browser, "ol.feed > li")
    assert not _all(browser, ".status.late")


def test_a_reply_refused_as_its_crud_expired_marks_the_crud_at_once(
    browser, site: str, web_db: str
) -> None:
    # A review: the reply was refused ("No such crud to reply to (or it has expired)")
    # while the crud still read "expires in 5 s", until the next 30 s refresh.
    with psycopg.connect(web_db) as conn:
        (uuid,) = conn.execute(
            "INSERT INTO activities (user_uuid, message, expires_at)"
            " SELECT uuid, 'About to go.', now() + interval '3 second' FROM users"
            " WHERE handle = 'londo' RETURNING uuid"
        ).fetchone()
    try:
        _sign_in_as(browser, site, "andrewbrown")
        browser.get(f"{site}/@londo/status/{uuid}")
        main = _shown(browser, "article.crud-main", "About to go.")
        assert "expired" not in main.get_attribute("class")
        time.sleep(3.5)
        _shown(browser, "form.compose textarea").send_keys("Too late?")
        _css(browser, "form.compose button[type=submit]").click()
        _shown(browser, "form.compose .form-error", "No such crud")
        assert "expired" in _css(browser, "article.crud-main").get_attribute("class")
        _css(browser, "#nav button").click()  # signed out, as the next tests expect
        _shown(browser, ".flash", "You are signed out.")
        _console_problems(browser, allowed=("404",))  # the refused reply's, drained
    finally:
        with psycopg.connect(web_db) as conn:
            conn.execute("DELETE FROM activities WHERE uuid = %s", [uuid])


def test_load_more_by_keyboard_keeps_the_readers_place(browser, site: str) -> None:
    # "Load more", disabled while it loads, gave the focus to the page's body: the next
    # Enter did nothing, and a screen reader was back at the top.
    browser.get(site + "/")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    browser.execute_script("document.querySelector('button.more').focus()")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    # Nothing more to load (the button is gone): the focus is on the first new row.
    assert browser.switch_to.active_element == _all(browser, "ol.feed > li")[20]


def test_the_focus_is_never_hidden_under_the_sticky_header(browser, site: str) -> None:
    # Shift+Tab up the feed scrolled each link to the window's top edge, under the
    # 61 px sticky header: the reader could not see where the focus was.
    browser.get(site + "/")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    rows = _all(browser, "ol.feed > li")
    header = "return document.querySelector('header.top').getBoundingClientRect().bottom"
    top = "return arguments[0].getBoundingClientRect().top"
    for row, at in ((rows[10], -300), (rows[12], 20)):  # scrolled past it; under the header
        link = _css(row, "a.when")
        browser.execute_script(
            "window.scrollBy(0, arguments[0].getBoundingClientRect().top - arguments[1])",
            link,
            at,
        )
        assert abs(browser.execute_script(top, link) - at) < 2
        browser.execute_script("arguments[0].focus()", link)
        assert browser.execute_script(top, link) >= browser.execute_script(header), at


def test_back_returns_to_the_readers_place_after_load_more(browser, site: str) -> None:
    # Back rebuilt the home feed from its first page, at the top: a reader three pages
    # down had to load them again and find their place.
    browser.get(site + "/")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    _css(browser, "button.more").click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    row = _all(browser, "ol.feed > li")[25]
    uuid = row.get_attribute("data-uuid")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    left_at = browser.execute_script("return window.scrollY")
    assert left_at > 500
    _css(row, "a.when").click()
    _shown(browser, "article.crud-main")
    browser.back()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    _wait(browser, lambda d: abs(d.execute_script("return window.scrollY") - left_at) < 5)
    assert _all(browser, "ol.feed > li")[25].get_attribute("data-uuid") == uuid
    # Forward and back again: the same.
    browser.forward()
    _shown(browser, "article.crud-main")
    browser.back()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    _wait(browser, lambda d: abs(d.execute_script("return window.scrollY") - left_at) < 5)
    assert _console_problems(browser) == []


def test_forward_and_back_return_to_a_place_reached_after_coming_back(browser, site: str) -> None:
    # The place was kept only when a link was followed: a page more loaded after coming
    # back with Back, then left with Forward, came back again with its first page, at the
    # top.
    browser.get(site + "/")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    _css(_all(browser, "ol.feed > li")[0], "a.when").click()
    _shown(browser, "article.crud-main")
    browser.back()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    _css(browser, "button.more").click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    row = _all(browser, "ol.feed > li")[25]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    left_at = browser.execute_script("return window.scrollY")
    assert left_at > 500
    time.sleep(0.3)  # the scroll is kept once it stops
    browser.forward()
    _shown(browser, "article.crud-main")
    browser.back()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    _wait(browser, lambda d: abs(d.execute_script("return window.scrollY") - left_at) < 5)
    assert _console_problems(browser) == []


@pytest.mark.parametrize("leave_by", ["forward", "link", "try again"])
def test_a_place_whose_restore_failed_is_kept_for_the_next_visit(
    browser, site: str, leave_by: str
) -> None:
    # Back while the API could not be reached: the failed restore wrote an empty place
    # over the reader's, and the next visit started at the first page, at the top. Left
    # by a link, the place it then said was the same empty one.
    browser.get(site + "/")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    _css(browser, "button.more").click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    row = _all(browser, "ol.feed > li")[25]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    left_at = browser.execute_script("return window.scrollY")
    _css(row, "a.when").click()
    _shown(browser, "article.crud-main")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/activities/home*"]})
    try:
        browser.back()
        _shown(browser, "main .error")
        time.sleep(0.3)  # past the restore's last step
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    if leave_by == "try again":  # the page's own offer: the place kept, not page 1
        (again,) = [b for b in _all(browser, "main button.more") if b.text == "Try again"]
        again.click()
    elif leave_by == "forward":
        browser.forward()
        _shown(browser, "article.crud-main")
        browser.back()
    else:
        _css(browser, "#nav a[href='/signin']").click()
        _shown(browser, "select#dev-handle")
        browser.back()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    _wait(browser, lambda d: abs(d.execute_script("return window.scrollY") - left_at) < 5)
    _console_problems(browser)  # the blocked requests' own lines


def test_back_returns_to_a_crud_pages_place_among_its_replies(
    browser, site: str, web_db: str
) -> None:
    # The restore scrolled before the crud page had put its replies' list in place: on
    # a page that short the scroll came out at the top.
    with psycopg.connect(web_db) as conn:
        (parent,) = conn.execute(
            "INSERT INTO activities (user_uuid, message) SELECT uuid, 'A busy crud.'"
            " FROM users WHERE handle = 'londo' RETURNING uuid::text"
        ).fetchone()
        conn.execute(
            "INSERT INTO activities (user_uuid, message, reply_to_activity_uuid, created_at)"
            " SELECT u.uuid, 'reply ' || n, %s, now() - (60 - n) * interval '1 second'"
            " FROM users AS u, generate_series(1, 40) AS n WHERE u.handle = 'bayko'",
            [parent],
        )
    try:
        browser.get(f"{site}/status/{parent}")
        _wait(browser, lambda d: len(_all(d, "ol.replies-list > li")) >= 20)
        while _css(browser, "button.more").is_displayed():
            shown = len(_all(browser, "ol.replies-list > li"))
            _css(browser, "button.more").click()
            _wait(browser, lambda d, n=shown: len(_all(d, "ol.replies-list > li")) > n)
        row = _all(browser, "ol.replies-list > li")[35]
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        left_at = browser.execute_script("return window.scrollY")
        assert left_at > 500
        _css(row, "a.who").click()
        _shown(browser, "h1", "Bayko")
        browser.back()
        _wait(browser, lambda d: len(_all(d, "ol.replies-list > li")) == 40)
        _wait(browser, lambda d: abs(d.execute_script("return window.scrollY") - left_at) < 5)
    finally:
        with psycopg.connect(web_db) as conn:
            conn.execute("DELETE FROM activities WHERE uuid = %s", [parent])


def test_a_page_without_a_list_leaves_no_place_for_the_next(browser, site: str) -> None:
    # The sign-in page (no list) kept the home feed's page count in its history entry;
    # Back there, then home again, loaded that many pages instead of the first.
    browser.get(site + "/")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    _css(browser, "button.more").click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 29)
    _css(browser, "#nav a[href='/signin']").click()
    _shown(browser, "select#dev-handle")
    _css(browser, "a.brand").click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    browser.back()
    _shown(browser, "select#dev-handle")
    _css(browser, "a.brand").click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) == 20)
    time.sleep(0.5)  # a page restored by mistake would go on loading
    assert len(_all(browser, "ol.feed > li")) == 20


def test_a_crud_not_found_says_so_in_the_tab_title(browser, site: str) -> None:
    browser.get(site + "/status/not-a-uuid")
    _shown(browser, "h1", "Crud not found")
    assert browser.title == "Crud not found · Cruddur"


def test_a_dev_sign_in_past_its_time_is_signed_out_on_the_next_page(browser, site: str) -> None:
    # It still showed the handle, "Sign out" and the post form: the reader learnt it had
    # run out only when a post was refused.
    _sign_in_as(browser, site, "andrewbrown")
    browser.execute_script(
        "const s = JSON.parse(sessionStorage.getItem('cruddur.session'));"
        "s.expiresAt = Date.now() - 1000;"
        "sessionStorage.setItem('cruddur.session', JSON.stringify(s));"
    )
    browser.get(site + "/")
    _shown(browser, "ol.feed > li")
    assert not _all(browser, "form.compose") and not _all(browser, "#nav .me")
    # No token left in the tab (who it was stays, for a page Back brings back whole).
    stored = browser.execute_script("return sessionStorage.getItem('cruddur.session')")
    assert "accessToken" not in json.loads(stored), stored
    # Said, not just done: the form went without a word.
    _shown(browser, ".flash", "Your sign-in ran out. Sign in again to post.")


def test_a_malformed_address_is_page_not_found(browser, site: str) -> None:
    # A percent sign that starts no escape cannot be decoded: the address names nothing.
    for path in ("/@%E0%A4%A", "/@bayko/status/%ZZ"):
        browser.get(site + path)
        _shown(browser, "h1", "Page not found")
        assert browser.title == "Not found · Cruddur"
    assert _console_problems(browser) == []


def test_a_crud_under_another_address_stays_on_screen_when_skipping_to_content(
    browser, site: str, web_db: str
) -> None:
    # An address may name another user than the crud's author (an old link, a typo);
    # the page moves the address to the author's. Skipping to content then must not load
    # the page again (a reply being typed would be lost).
    with psycopg.connect(web_db) as conn:
        (crud,) = conn.execute(
            "SELECT a.uuid::text FROM activities a JOIN users u ON u.uuid = a.user_uuid"
            " WHERE u.handle = 'andrewbrown' AND a.expires_at > now() LIMIT 1"
        ).fetchone()
    browser.get(f"{site}/@londo/status/{crud}")
    own_address = f"/@andrewbrown/status/{crud}"
    _wait(browser, lambda d: d.execute_script("return location.pathname") == own_address)
    _shown(browser, "article.crud-main")
    browser.execute_script("window.shownCrud = document.querySelector('article.crud-main')")
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.switch_to.active_element.text == "Skip to content"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    time.sleep(0.3)
    assert browser.execute_script("return window.shownCrud.isConnected"), "rendered again"
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    assert _console_problems(browser) == []


PARENT = "5eed0000-0000-4000-8000-000000000001"  # the seed's crud by andrewbrown


def test_replying_to_leads_to_the_parent_under_its_author(browser, site: str) -> None:
    # The link named the replier (/@londo/status/<andrewbrown's crud>): hovered, copied
    # or shared, it said the wrong person wrote the crud.
    browser.get(site + "/")
    reply = _shown(browser, "ol.feed > li", "Welcome to the feed.")  # londo's reply
    link = _css(reply, ".reply-to a")
    assert link.get_attribute("href") == f"{site}/status/{PARENT}"
    link.click()
    own_address = f"/@andrewbrown/status/{PARENT}"
    _wait(browser, lambda d: d.execute_script("return location.pathname") == own_address)
    assert "This was imported as seed data!" in _shown(browser, "article.crud-main").text

    # The reply's own page leads to its parent too; the address works when loaded afresh.
    _css(browser, "a.brand").click()
    _css(_shown(browser, "ol.feed > li", "Welcome to the feed."), "a.when").click()
    _wait(browser, lambda d: "/@londo/status/" in d.current_url)
    main = _shown(browser, "article.crud-main", "Welcome to the feed.")
    assert _css(main, ".reply-to a").get_attribute("href") == f"{site}/status/{PARENT}"
    browser.get(f"{site}/status/{PARENT}")
    _wait(browser, lambda d: d.execute_script("return location.pathname") == own_address)
    _shown(browser, "article.crud-main", "This was imported as seed data!")
    assert _console_problems(browser) == []


def test_crud_page_shows_replies_oldest_first(browser, site: str, shots) -> None:
    browser.get(site + "/")
    seed = _shown(browser, "ol.feed > li", "This was imported as seed data!")
    _css(seed, "a.replies").click()  # in-page navigation, no reload
    _shown(browser, "ol.replies-list > li")
    assert re.fullmatch(
        rf"{re.escape(site)}/@andrewbrown/status/[0-9a-f-]{{36}}", browser.current_url
    )
    assert "This was imported as seed data!" in _css(browser, "article.crud-main").text
    assert _messages(browser, "ol.replies-list > li .message") == [
        "Imported, and it shows!",
        "Welcome to the feed.",
    ]
    assert "Sign in to reply." in _css(browser, "main").text
    browser.save_screenshot(str(shots / "crud-page.png"))
    browser.back()
    _shown(browser, "ol.feed > li")
    assert _console_problems(browser) == []


def test_dev_sign_in_post_reply(browser, site: str, shots) -> None:
    browser.get(site + "/signin")
    Select(_shown(browser, "select#dev-handle option[value=andrewbrown]").find_element(
        "xpath", "..")).select_by_value("andrewbrown")  # fmt: skip
    _css(browser, "form button[type=submit]").click()
    _shown(browser, ".flash", "Signed in as @andrewbrown.")
    assert _css(browser, "#nav .me").text == "@andrewbrown"
    token = browser.execute_script("return sessionStorage.getItem('cruddur.session')")
    assert json.loads(token)["accessToken"].count(".") == 2
    assert browser.get_cookies() == []  # no cookie carries the sign-in

    textarea = _shown(browser, "form.compose textarea")
    textarea.send_keys("   ")
    _css(browser, "form.compose button[type=submit]").click()
    error = _shown(browser, "form.compose .field-error", "Message must not be blank.")
    assert error.is_displayed() and textarea.get_attribute("aria-invalid") == "true"

    textarea.clear()
    textarea.send_keys("x" * 281)
    counter = _css(browser, "form.compose .counter")
    assert counter.text == "281 / 280" and "over" in counter.get_attribute("class")

    # By keyboard alone: the lifetime, the message, then Tab to the button and Enter.
    Select(_css(browser, "form.compose select")).select_by_value("1-hour")
    textarea.clear()
    textarea.send_keys("Grüße from a real browser")
    ActionChains(browser).send_keys(Keys.TAB, Keys.TAB, Keys.ENTER).perform()
    _wait(browser, lambda d: _messages(d)[:1] == ["Grüße from a real browser"])
    # The button, disabled while posting, gave the focus to the page's body: back on it.
    assert browser.switch_to.active_element == _css(browser, "form.compose button[type=submit]")
    top = _all(browser, "ol.feed > li")[0]
    assert "@andrewbrown" in top.text and "expires in 1 h" in top.text
    said = "return document.querySelector('main [role=status]:not(.flash)').textContent"
    assert browser.execute_script(said) == "Posted."  # said to a screen reader
    assert textarea.get_attribute("aria-invalid") is None
    browser.save_screenshot(str(shots / "posted.png"))

    _css(top, "a.when").click()
    _shown(browser, "main .status", "No replies yet.")
    reply = _shown(browser, "form.compose textarea")
    reply.send_keys("And a reply, from the same browser.")
    _css(browser, "form.compose button[type=submit]").click()
    _shown(browser, "ol.replies-list > li", "And a reply, from the same browser.")
    assert browser.execute_script(said) == "Posted."
    assert "1 reply" in _css(browser, "article.crud-main .replies").text

    _css(browser, "a.brand").click()
    _wait(browser, lambda d: _messages(d)[:1] == ["And a reply, from the same browser."])
    posted = _shown(browser, "ol.feed > li", "Grüße from a real browser")
    assert "1 reply" in posted.text  # counted by the API, not only on the page

    _css(browser, "#nav button").click()  # sign out
    _shown(browser, ".flash", "You are signed out.")
    assert browser.execute_script("return sessionStorage.getItem('cruddur.session')") is None
    assert not _all(browser, "form.compose")
    assert _console_problems(browser, allowed=("422",)) == []


def test_a_fresh_crud_expires_in_the_lifetime_picked(browser, site: str, web_db: str) -> None:
    # The time left was rounded down: a crud posted for 7 days said "expires in 6 d" from
    # its first second, 1 day "23 h", 1 hour "59 min".
    _sign_in_as(browser, site, "bayko")
    try:
        for ttl, said in (("7-days", "7 d"), ("1-day", "1 d"), ("1-hour", "1 h")):
            Select(_css(browser, "form.compose select")).select_by_value(ttl)
            _css(browser, "form.compose textarea").send_keys(f"Posted for {ttl}")
            _css(browser, "form.compose button[type=submit]").click()
            _wait(browser, lambda d, ttl=ttl: _messages(d)[:1] == [f"Posted for {ttl}"])
            expires = _css(_all(browser, "ol.feed > li")[0], ".expires").text
            assert expires == f"expires in {said}", ttl
        _css(browser, "#nav button").click()  # sign out
        _shown(browser, ".flash", "You are signed out.")
    finally:
        with psycopg.connect(web_db) as conn:
            conn.execute("DELETE FROM activities WHERE message LIKE 'Posted for %'")
    assert _console_problems(browser) == []


def _sign_in_as(browser, site: str, handle: str) -> None:
    browser.get(site + "/signin")
    _choose_dev_user(browser, handle)


def _choose_dev_user(browser, handle: str) -> None:
    """On the development sign-in page: sign in as `handle`."""
    Select(_shown(browser, f"select#dev-handle option[value={handle}]").find_element(
        "xpath", "..")).select_by_value(handle)  # fmt: skip
    _css(browser, "form button[type=submit]").click()
    _shown(browser, ".flash", f"Signed in as @{handle}.")


def test_back_to_a_page_kept_from_before_signing_out_shows_it_signed_out(
    browser, site: str
) -> None:
    # A review: the browser's back/forward cache gave back a page as it was, signed in,
    # the post form and its draft there, after the reader signed out on a later page;
    # a post from it was stored as the signed-out reader.
    _sign_in_as(browser, site, "andrewbrown")
    _shown(browser, "form.compose textarea").send_keys("my private draft")
    browser.execute_script("window.keptPage = true")  # gone if the page is loaded again
    browser.get(site + "/@bayko")  # another document: the first one may be kept whole
    _shown(browser, "ol.feed > li")
    _css(browser, "#nav button").click()  # sign out
    _shown(browser, ".flash", "You are signed out.")
    browser.back()  # the sign-out's own page
    _wait(browser, lambda d: d.execute_script("return location.pathname") == "/@bayko")
    browser.back()
    _wait(browser, lambda d: d.execute_script("return location.pathname") == "/")
    _shown(browser, "#nav a[href='/signin']")
    _shown(browser, "ol.feed > li")
    assert not _all(browser, "form.compose")
    assert "my private draft" not in browser.page_source
    assert browser.execute_script("return window.keptPage === undefined")


def test_back_to_a_kept_page_whose_dev_sign_in_ran_out_keeps_its_draft(browser, site: str) -> None:
    # A review: a later page that found the sign-in past its time dropped it, and the
    # kept page was loaded again on Back, its draft lost; a sign-in that ran out is no
    # other person (the page says so when the draft is sent, and keeps it).
    _sign_in_as(browser, site, "andrewbrown")
    _shown(browser, "form.compose textarea").send_keys("draft kept")
    browser.execute_script("window.keptPage = true")
    browser.get(site + "/@bayko")
    _shown(browser, "ol.feed > li")
    browser.execute_script(
        "const s = JSON.parse(sessionStorage.getItem('cruddur.session'));"
        "s.expiresAt = Date.now() - 1000;"
        "sessionStorage.setItem('cruddur.session', JSON.stringify(s))"
    )
    browser.refresh()  # this page finds it past its time and drops it
    _shown(browser, "#nav a[href='/signin']")
    browser.back()
    _wait(browser, lambda d: d.execute_script("return location.pathname") == "/")
    time.sleep(0.5)  # a reload, if one came, has begun
    assert browser.execute_script("return window.keptPage === true")
    assert _css(browser, "form.compose textarea").get_property("value") == "draft kept"


def test_enter_pressed_twice_on_crud_posts_once_and_says_nothing_of_a_blank(
    browser, site: str, web_db: str
) -> None:
    # A review: the second Enter sent the box the first had emptied, and the page said
    # "must not be blank" under a post that had gone through.
    _sign_in_as(browser, site, "andrewbrown")
    _shown(browser, "form.compose textarea").send_keys("Pressed twice")
    button = _css(browser, "form.compose button[type=submit]")
    button.send_keys(Keys.ENTER)
    _wait(browser, lambda d: d.execute_script(_SAID) == "Posted.")
    browser.switch_to.active_element.send_keys(Keys.ENTER)  # the button, focus given back
    time.sleep(1)
    try:
        assert browser.switch_to.active_element == button
        errors = _all(browser, "form.compose .form-error, .field-error")
        assert not [error.text for error in errors if error.text]
        assert _console_problems(browser) == []  # no 422 asked for
        with psycopg.connect(web_db) as conn:
            stored = conn.execute("SELECT count(*) FROM activities WHERE message = 'Pressed twice'")
            assert stored.fetchone()[0] == 1
    finally:
        with psycopg.connect(web_db) as conn:
            conn.execute("DELETE FROM activities WHERE message = 'Pressed twice'")
        browser.execute_script("sessionStorage.removeItem('cruddur.session')")


def test_sign_in_to_reply_comes_back_to_the_crud(browser, site: str) -> None:
    # "Sign in to reply" led to the home feed after signing in, and Back from there
    # showed the sign-in form again.
    crud = f"/@andrewbrown/status/{PARENT}"
    browser.get(site + "/")  # where Back leads below (not another test's page)
    _shown(browser, "ol.feed > li")
    browser.get(site + crud)
    _shown(browser, "main .hint a", "Sign in").click()
    _wait(browser, lambda d: d.execute_script("return location.pathname") == "/signin")
    Select(_shown(browser, "select#dev-handle option[value=bayko]").find_element(
        "xpath", "..")).select_by_value("bayko")  # fmt: skip
    _css(browser, "form button[type=submit]").click()
    _shown(browser, ".flash", "Signed in as @bayko.")
    assert browser.current_url == site + crud
    _shown(browser, "article.crud-main", "This was imported as seed data!")
    _shown(browser, "form.compose textarea")  # the reply form
    # Back: the page before the crud's, not the sign-in form, nor the crud's again (it
    # was there twice in a row, and the first Back did nothing).
    browser.back()
    _wait(browser, lambda d: d.execute_script("return location.pathname") == "/")
    browser.execute_script("sessionStorage.removeItem('cruddur.session')")  # signed out

    # Only a path on this site: another host (or nothing) leads to the home feed.
    for next_ in (
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "/%09/evil.example",
        "/..//evil.example/",  # a path here, //evil.example/: the form stayed on screen
        "",
    ):
        browser.get(f"{site}/signin?next={next_}")
        Select(_shown(browser, "select#dev-handle option[value=bayko]").find_element(
            "xpath", "..")).select_by_value("bayko")  # fmt: skip
        _css(browser, "form button[type=submit]").click()
        _shown(browser, ".flash", "Signed in as @bayko.")
        assert browser.current_url == site + "/", next_
        _css(browser, "#nav button").click()  # sign out
        _shown(browser, ".flash", "You are signed out.")
    assert _console_problems(browser) == []


def _paste(browser, textarea, text: str) -> None:
    """What a paste does: the whole text at once, then one input event."""
    browser.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
        textarea,
        text,
    )


def test_a_paste_over_the_limit_is_refused_in_words_before_sending(browser, site: str) -> None:
    # 20,000 characters: over the API's 16 kB body limit, which answered a bare 413.
    _sign_in_as(browser, site, "andrewbrown")
    browser.execute_script(
        "window.posts = 0; const original = window.fetch;"
        "window.fetch = (url, options) => {"
        "  if (options?.method === 'POST') window.posts += 1;"
        "  return original(url, options); };"
    )
    textarea = _shown(browser, "form.compose textarea")
    _paste(browser, textarea, "é" * 20_000)
    assert _css(browser, "form.compose .counter").text == "20000 / 280"
    _css(browser, "form.compose button[type=submit]").click()
    said = _shown(browser, "form.compose .field-error", "20000 characters")
    assert said.text == "Message is 20000 characters; the most is 280."
    assert textarea.get_attribute("aria-invalid") == "true"
    assert _css(browser, "form.compose .form-error").text == ""
    assert browser.execute_script("return window.posts") == 0  # nothing was sent

    # A reply's limit is 1,024: 1,025 characters are refused the same way.
    _css(_all(browser, "ol.feed > li")[0], "a.when").click()
    _shown(browser, "main .status")
    browser.execute_script("window.posts = 0")  # the same page: the wrapper stays
    reply = _shown(browser, "form.compose textarea")
    _paste(browser, reply, "x" * 1025)
    _css(browser, "form.compose button[type=submit]").click()
    said = _shown(browser, "form.compose .field-error", "1025 characters")
    assert said.text == "Message is 1025 characters; the most is 1024."
    assert browser.execute_script("return window.posts") == 0
    _css(browser, "#nav button").click()  # sign out
    _shown(browser, ".flash", "You are signed out.")
    assert _console_problems(browser) == []


_DESCRIPTION = """
return arguments[0].getAttribute('aria-describedby').split(' ')
  .map((id) => document.getElementById(id)).filter(Boolean)
  .map((el) => el.textContent).join(' ');
"""


# The POSTs' Idempotency-Key headers are noted; the first POST's answer is thrown away
# once the server has sent it, as a dropped connection would lose it after the commit.
_LOSE_FIRST_ANSWER = """
window.sentKeys = []; const send = window.fetch; let lose = 1;
window.fetch = async (url, options = {}) => {
  const posting = options.method === "POST";
  if (posting) window.sentKeys.push(options.headers?.["Idempotency-Key"] ?? null);
  const answer = await send(url, options);
  if (posting && lose-- > 0) throw new TypeError("Failed to fetch");
  return answer;
};
"""


def _post_and_lose_the_answer(browser, site: str, message: str):
    """Signed in as @andrewbrown, `message` posted and its answer thrown away after the
    server stored it; the compose box, the page saying it could not reach the API."""
    _sign_in_as(browser, site, "andrewbrown")
    browser.execute_script(_LOSE_FIRST_ANSWER)
    textarea = _shown(browser, "form.compose textarea")
    textarea.send_keys(message)
    _css(browser, "form.compose button[type=submit]").click()
    _shown(browser, "form.compose .form-error", "Cannot reach the Cruddur API")
    return textarea


# The keys sent from here on, in window.sentKeys, with no answer lost (a page just
# reloaded has lost _LOSE_FIRST_ANSWER's record).
_RECORD_KEYS = _LOSE_FIRST_ANSWER.replace("lose = 1", "lose = 0")


def _send(browser, text: str) -> None:
    """`text` typed into the compose box (post or reply) and sent; back once the page
    says "Posted."."""
    box = _shown(browser, "form.compose textarea")
    if box.get_property("value") != text:  # a draft the box kept is sent as it is
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(text)
    _css(browser, "form.compose button[type=submit]").click()
    _wait(browser, lambda d: d.execute_script(_SAID) == "Posted.")


def test_a_post_sent_again_after_its_answer_was_lost_is_stored_and_shown_once(
    browser, site: str, web_db: str
) -> None:
    # Without a key, the second press stored the crud a second time; with one, the
    # stored crud answered again was listed twice (and a reply counted twice) when the
    # page had been read again meanwhile.
    message = f"Sent twice, stored once {uuid.uuid4().hex[:8]}"
    textarea = _post_and_lose_the_answer(browser, site, message)
    assert textarea.get_attribute("value") == message  # kept for the reader to send again
    _css(browser, "a.brand").click()  # the feed read again: the crud is on it
    _wait(browser, lambda d: _messages(d)[:1] == [message])
    _send(browser, message)
    assert _texts(browser, "ol.feed > li .message").count(message) == 1
    with psycopg.connect(web_db) as conn:
        stored = conn.execute("SELECT count(*) FROM activities WHERE message = %s", [message])
        assert stored.fetchone()[0] == 1
    first, again = browser.execute_script("return window.sentKeys")
    assert first and first == again, "the same message is sent again under its key"

    # Once stored, the same words are a new message: a new key, stored again.
    _shown(browser, "form.compose textarea").send_keys(message)
    _css(browser, "form.compose button[type=submit]").click()
    _wait(browser, lambda d: _messages(d)[:2] == [message, message])
    keys = browser.execute_script("return window.sentKeys")
    assert len(keys) == 3 and keys[2] not in (None, first)

    # A reply whose answer is lost, its crud's page read again, the reply sent again.
    _css(_all(browser, "ol.feed > li")[0], "a.when").click()
    _shown(browser, "main .status", "No replies yet.")
    browser.execute_script(_LOSE_FIRST_ANSWER)
    reply = f"A reply sent twice {uuid.uuid4().hex[:8]}"
    _shown(browser, "form.compose textarea").send_keys(reply)
    _css(browser, "form.compose button[type=submit]").click()
    _shown(browser, "form.compose .form-error", "Cannot reach the Cruddur API")
    # Away and back within the page:
    # the crud's page read again, the reply listed and counted.
    _css(browser, "a.brand").click()
    _shown(browser, "ol.feed > li")
    browser.back()
    _shown(browser, "ol.replies-list > li", reply)
    assert "1 reply" in _css(browser, "article.crud-main .replies").text
    _send(browser, reply)
    assert _texts(browser, "ol.replies-list > li .message") == [reply]
    assert "1 reply" in _css(browser, "article.crud-main .replies").text
    with psycopg.connect(web_db) as conn:
        stored = conn.execute("SELECT count(*) FROM activities WHERE message = %s", [reply])
        assert stored.fetchone()[0] == 1
    assert _console_problems(browser) == []


def _switch_user_in_page(browser, handle: str) -> None:
    """Sign out and in as `handle` without loading the page again (its memory kept)."""
    _css(browser, "#nav button").click()  # sign out
    _shown(browser, ".flash", "You are signed out.")
    _css(browser, "#nav a.button").click()  # Sign in, within the page
    _choose_dev_user(browser, handle)


def test_a_message_waiting_to_be_sent_again_keeps_its_key_while_another_user_posts(
    browser, site: str, web_db: str
) -> None:
    # The keys were the tab's, not each user's: another user's post of the same words
    # took the waiting key and, once stored, dropped it; the first user's retry then went
    # under a new key, and their crud was stored twice.
    message = f"Same words, two people {uuid.uuid4().hex[:8]}"
    _post_and_lose_the_answer(browser, site, message)
    for handle in ("bayko", "andrewbrown"):
        _switch_user_in_page(browser, handle)
        _send(browser, message)
    with psycopg.connect(web_db) as conn:
        stored = conn.execute(
            "SELECT u.handle, count(*) FROM activities a JOIN users u ON u.uuid = a.user_uuid"
            " WHERE a.message = %s GROUP BY u.handle ORDER BY u.handle",
            [message],
        ).fetchall()
    assert stored == [("andrewbrown", 1), ("bayko", 1)]
    sent = browser.execute_script("return window.sentKeys")
    lost, bayko, again = [key for key in sent if key]  # the sign-ins send none
    assert again == lost and bayko != lost
    assert _console_problems(browser) == []


def test_a_post_sent_again_after_a_reload_is_stored_once(browser, site: str, web_db: str) -> None:
    # The waiting keys lived in the page's memory: a post whose answer was lost, the page
    # reloaded, and the same words sent again went under a new key, stored twice.
    message = f"Lost, reloaded, sent again {uuid.uuid4().hex[:8]}"
    _post_and_lose_the_answer(browser, site, message)
    (lost,) = browser.execute_script("return window.sentKeys")
    browser.refresh()  # the tab's sign-in is kept; its memory, window.sentKeys too, is not
    browser.execute_script(_RECORD_KEYS)
    _send(browser, message)
    assert browser.execute_script("return window.sentKeys") == [lost]
    with psycopg.connect(web_db) as conn:
        stored = conn.execute("SELECT count(*) FROM activities WHERE message = %s", [message])
        assert stored.fetchone()[0] == 1
    _wait(browser, lambda d: _texts(d, "ol.feed > li .message").count(message) == 1)
    assert _console_problems(browser) == []


def test_a_reply_sent_again_after_a_reload_is_counted_once_on_a_long_thread(
    browser, site: str, web_db: str
) -> None:
    # A review: the crud read again after the lost answer (its count took the reply in),
    # the reply on a page not loaded, the count went one up again on the replay: 103
    # replies shown for 102.
    parent = _crud_with_101_replies(web_db)
    reply = f"Lost on a long thread {uuid.uuid4().hex[:8]}"
    try:
        _sign_in_as(browser, site, "andrewbrown")
        browser.get(f"{site}/@bayko/status/{parent}")
        _wait(browser, lambda d: len(_all(d, "ol.replies-list > li")) == 100)
        browser.execute_script(_LOSE_FIRST_ANSWER)
        _shown(browser, "form.compose textarea").send_keys(reply)
        _css(browser, "form.compose button[type=submit]").click()
        _shown(browser, "form.compose .form-error", "Cannot reach the Cruddur API")
        browser.refresh()
        _wait(browser, lambda d: len(_all(d, "ol.replies-list > li")) == 100)
        assert "102 replies" in _css(browser, "article.crud-main .replies").text
        _send(browser, reply)
        more = _css(browser, "button.more")
        more.click()
        _wait(browser, lambda d: not more.is_displayed())
        assert _texts(browser, "ol.replies-list > li .message").count(reply) == 1
        assert len(_all(browser, "ol.replies-list > li")) == 102
        assert "102 replies" in _css(browser, "article.crud-main .replies").text
    finally:
        with psycopg.connect(web_db) as conn:
            conn.execute("DELETE FROM activities WHERE uuid = %s", [parent])
    assert _console_problems(browser) == []


def test_the_same_words_after_the_first_crud_expired_are_a_new_crud(
    browser, site: str, web_db: str
) -> None:
    # A review: the waiting key outlived the reload that showed the crud stored; once it
    # expired, the same words posted again were its replay ("Posted." of a crud gone).
    # And the tab's storage held the unsent words, for whoever used it next.
    message = f"Again after it expired {uuid.uuid4().hex[:8]}"
    _post_and_lose_the_answer(browser, site, message)
    kept = browser.execute_script("return sessionStorage.getItem('cruddur.waitingKeys')")
    assert kept and message not in kept and "andrewbrown" not in kept
    browser.refresh()
    with psycopg.connect(web_db) as conn:  # two hours on: the crud and its kept answer
        (crud,) = conn.execute(
            "UPDATE activities SET created_at = now() - interval '2 hour',"
            " expires_at = now() - interval '1 hour' WHERE message = %s"
            " RETURNING row_to_json(activities)::jsonb",
            [message],
        ).fetchone()
        conn.execute(
            "UPDATE idempotency_keys SET response = jsonb_set(jsonb_set(response::jsonb,"
            " '{created_at}', %s), '{expires_at}', %s)::text"
            " WHERE response::jsonb ->> 'uuid' = %s",
            [json.dumps(crud["created_at"]), json.dumps(crud["expires_at"]), crud["uuid"]],
        )
    browser.execute_script(_RECORD_KEYS)
    _send(browser, message)
    with psycopg.connect(web_db) as conn:
        live = conn.execute(
            "SELECT count(*) FILTER (WHERE expires_at > now()), count(*) FROM activities"
            " WHERE message = %s",
            [message],
        ).fetchone()
    assert live == (1, 2)
    replayed, new = browser.execute_script("return window.sentKeys")
    assert replayed != new
    assert _console_problems(browser) == []


def test_a_post_sent_again_where_the_browser_refuses_storage_is_stored_once(
    site: str, web_db: str
) -> None:
    # A review: with storage refused (cookies blocked) the waiting key was kept nowhere,
    # and the post sent again after a lost answer went under a new key, stored twice.
    browser = start_chromium(prefs={"profile.default_content_setting_values.cookies": 2})
    message = f"Storage refused {uuid.uuid4().hex[:8]}"
    try:
        _post_and_lose_the_answer(browser, site, message)
        _css(browser, "form.compose button[type=submit]").click()  # the words still there
        _wait(browser, lambda d: d.execute_script(_SAID) == "Posted.")
        first, again = browser.execute_script("return window.sentKeys")
        assert first == again
        with psycopg.connect(web_db) as conn:
            stored = conn.execute("SELECT count(*) FROM activities WHERE message = %s", [message])
            assert stored.fetchone()[0] == 1
        assert _console_problems(browser) == []
    finally:
        browser.quit()


_SAID = "return document.querySelector('main [role=status]:not(.flash)').textContent"


def _texts(browser, selector: str) -> list[str]:
    """The elements' text as the page holds it, shown yet or not (a fresh row fades in:
    selenium's .text is "" until it shows)."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)", selector
    )


def test_the_post_and_reply_boxes_describe_their_limit_and_count(browser, site: str) -> None:
    # The counter was a span with an aria-label, which screen readers ignore: nobody
    # heard the limit or the count.
    _sign_in_as(browser, site, "andrewbrown")
    textarea = _shown(browser, "form.compose textarea")
    textarea.send_keys("Hello")
    described = browser.execute_script(_DESCRIPTION, textarea)
    assert "Up to 280 characters." in described and "5 / 280" in described
    _css(_all(browser, "ol.feed > li")[0], "a.when").click()
    _shown(browser, "main .status")
    reply = _shown(browser, "form.compose textarea")
    described = browser.execute_script(_DESCRIPTION, reply)
    assert "Up to 1024 characters." in described and "0 / 1024" in described
    _css(browser, "#nav button").click()  # sign out
    _shown(browser, ".flash", "You are signed out.")
    assert _console_problems(browser) == []


def test_signing_in_and_out_works_where_the_browser_refuses_storage(site: str) -> None:
    # Blocking cookies also makes sessionStorage throw: the sign-in then lives in the
    # page's memory only, as the README promises, instead of failing.
    browser = start_chromium(prefs={"profile.default_content_setting_values.cookies": 2})
    try:
        browser.get(site + "/signin")
        assert browser.execute_script(
            "try { sessionStorage.length; return false } catch { return true }"
        ), "this browser should refuse storage"
        Select(_shown(browser, "select#dev-handle option[value=andrewbrown]").find_element(
            "xpath", "..")).select_by_value("andrewbrown")  # fmt: skip
        _css(browser, "form button[type=submit]").click()
        _shown(browser, ".flash", "Signed in as @andrewbrown.")
        assert _css(browser, "#nav .me").text == "@andrewbrown"
        _shown(browser, "form.compose textarea")
        _css(browser, "#nav button").click()  # sign out
        _shown(browser, ".flash", "You are signed out.")
        assert not _all(browser, "form.compose")
        assert _console_problems(browser) == []
    finally:
        browser.quit()


def _crud_with_101_replies(web_db: str) -> str:
    """@bayko's crud with 101 replies by @londo: two pages of them (100 a page), oldest
    first. Delete it after (its replies go with it)."""
    with psycopg.connect(web_db) as conn:
        (parent,) = conn.execute(
            "INSERT INTO activities (user_uuid, message, replies_count, created_at, expires_at)"
            " SELECT uuid, 'A crud with many replies', 101, now() - interval '3 hour',"
            " now() + interval '5 day' FROM users WHERE handle = 'bayko' RETURNING uuid"
        ).fetchone()
        conn.execute(
            "INSERT INTO activities"
            " (user_uuid, message, reply_to_activity_uuid, created_at, expires_at)"
            " SELECT replier.uuid, 'Reply ' || n, parent.uuid,"
            " parent.created_at + n * interval '1 second', parent.expires_at"
            " FROM generate_series(1, 101) AS n, activities parent, users replier"
            " WHERE parent.uuid = %s AND replier.handle = 'londo'",
            [parent],
        )
    return str(parent)


def test_a_reply_posted_before_the_last_page_is_shown_once_in_order(
    browser, site: str, web_db: str
) -> None:
    parent = _crud_with_101_replies(web_db)
    try:
        browser.get(site + "/signin")
        Select(_shown(browser, "select#dev-handle option[value=andrewbrown]").find_element(
            "xpath", "..")).select_by_value("andrewbrown")  # fmt: skip
        _css(browser, "form button[type=submit]").click()
        _shown(browser, ".flash", "Signed in as @andrewbrown.")
        browser.get(f"{site}/@bayko/status/{parent}")
        _wait(browser, lambda d: len(_all(d, "ol.replies-list > li")) == 100)
        more = _css(browser, "button.more")
        assert more.is_displayed()
        assert more.text == "Load more replies"  # its own label, after the first page too

        _shown(browser, "form.compose textarea").send_keys("My new reply")
        _css(browser, "form.compose button[type=submit]").click()
        _shown(browser, "ol.replies-list > li", "My new reply")  # seen at once
        assert "102 replies" in _css(browser, "article.crud-main .replies").text

        more.click()  # the last page holds Reply 101 and the new reply, in that order
        _wait(browser, lambda d: not more.is_displayed())
        replies = [f"Reply {n}" for n in range(1, 102)] + ["My new reply"]
        assert _messages(browser, "ol.replies-list > li .message") == replies
        _css(browser, "#nav button").click()  # sign out
        _shown(browser, ".flash", "You are signed out.")
    finally:
        with psycopg.connect(web_db) as conn:  # its replies go with it
            conn.execute("DELETE FROM activities WHERE uuid = %s", [parent])
    assert _console_problems(browser) == []


def test_a_draft_survives_try_again_and_coming_back_online(browser, site: str) -> None:
    # A review: "Try again" (or the browser's online event) drew the page again with an
    # empty post box: what the reader had typed meanwhile was gone, and the online event
    # sent their focus to the heading mid-word.
    _sign_in_as(browser, site, "bayko")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/activities/home*"]})
    try:
        browser.get(site + "/")
        _shown(browser, "main .error", "Cannot reach the Cruddur API")
        _css(browser, "form.compose textarea").send_keys("a draft I care about")
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    (again,) = [b for b in _all(browser, "main button.more") if b.text == "Try again"]
    again.click()
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) > 0)
    assert _css(browser, "form.compose textarea").get_property("value") == "a draft I care about"
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/activities/home*"]})
    try:
        _css(browser, "a.brand").click()  # the home feed read again, within the page
        _shown(browser, "main .error", "Cannot reach the Cruddur API")
        box = _css(browser, "form.compose textarea")
        assert box.get_property("value") == "a draft I care about"
        box.send_keys(", and more")
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    browser.execute_script("window.dispatchEvent(new Event('online'))")
    _wait(browser, lambda d: len(_all(d, "ol.feed > li")) > 0)
    box = _css(browser, "form.compose textarea")
    assert box.get_property("value") == "a draft I care about, and more"
    assert browser.execute_script("return document.activeElement") == box
    box.send_keys("!")  # still typing where it was: at the end
    assert box.get_property("value") == "a draft I care about, and more!"
    _css(browser, "#nav button").click()  # sign out: the draft is not left for the next reader
    _shown(browser, ".flash", "You are signed out.")
    _css(browser, "#nav a.button").click()  # Sign in, within the page
    _choose_dev_user(browser, "bayko")
    assert _shown(browser, "form.compose textarea").get_property("value") == ""
    assert "a draft" not in json.dumps(browser.execute_script("return {...sessionStorage}"))
    assert _console_problems(browser, allowed=("ERR_BLOCKED_BY_CLIENT",)) == []


def test_a_reply_refused_when_the_sign_in_ran_out_comes_back_after_signing_in(
    browser, site: str
) -> None:
    # A review: the header's "Sign in" led to the home feed, and the crud page came back
    # with an empty reply box: the reply typed before the sign-in ran out was lost.
    crud = f"/@andrewbrown/status/{PARENT}"
    _sign_in_as(browser, site, "bayko")
    browser.get(site + crud)
    _shown(browser, "form.compose textarea").send_keys("my long thoughtful reply")
    browser.execute_script("const now = Date.now.bind(Date); Date.now = () => now() + 3600e3;")
    _css(browser, "form.compose button[type=submit]").click()
    _shown(browser, "form.compose .form-error", "Sign in again to post")
    _css(browser, "#nav a[href='/signin']").click()
    _wait(browser, lambda d: d.execute_script("return location.pathname") == "/signin")
    _choose_dev_user(browser, "bayko")
    assert browser.current_url == site + crud
    box = _shown(browser, "form.compose textarea")
    assert box.get_property("value") == "my long thoughtful reply"
    _css(browser, "#nav button").click()  # sign out
    _shown(browser, ".flash", "You are signed out.")


def test_a_page_that_found_no_server_offers_to_ask_again(browser, site: str) -> None:
    # The page said "Cannot reach the Cruddur API …" and nothing more: no way to ask
    # again but a reload, which, with the server down, is the browser's own error page.
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/activities/*"]})
    try:
        for path in ("/", "/@andrewbrown/status/5eed0000-0000-4000-8000-000000000001"):
            browser.get(site + path)
            _shown(browser, "main .error", "Cannot reach the Cruddur API")
            assert [b.text for b in _all(browser, "main button.more") if b.is_displayed()] == [
                "Try again"
            ]
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    _css(browser, "main button.more").click()  # the server answers again
    crud = "main [data-uuid='5eed0000-0000-4000-8000-000000000001']"
    _wait(browser, lambda d: _all(d, crud) and not _all(d, "main .error"))
    assert not [b for b in _all(browser, "main button.more") if b.text == "Try again"]
    assert _console_problems(browser, allowed=("ERR_BLOCKED_BY_CLIENT",)) == []


@contextlib.contextmanager
def _static_host(folder: Path, api_answers_404: bool = False) -> Iterator[str]:
    """A static host set up as the README says for CloudFront: the built files, and
    index.html with status 200 for every other path, /api/… included (or, with
    api_answers_404, its own HTML 404 there). Its base URL."""

    class Host(http.server.SimpleHTTPRequestHandler):
        def send_head(self):
            if api_answers_404 and self.path.startswith("/api/"):
                self.send_error(404)
                return None
            if not Path(self.translate_path(self.path)).is_file():
                self.path = "/index.html"
            return super().send_head()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Host, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("api_answers_404", [False, True])
def test_an_api_answer_that_is_not_json_is_said_in_words(
    browser, tmp_path, api_answers_404: bool
) -> None:
    # `web build` without --api-url on a host that answers every path with index.html
    # (200): the page read that as a feed and said "rows is not iterable", or "Cannot
    # read properties of null (reading 'activity')", with no way to ask again. On a host
    # whose /api/ paths answer its own 404 page, every user was "No such user" and every
    # crud "Crud not found".
    from cruddur.web.build import build

    build(Settings.from_env({"CRUDDUR_HOME": str(tmp_path / "home")}), tmp_path / "site")
    with _static_host(tmp_path / "site", api_answers_404) as host:
        for path in ("/", "/@andrewbrown", f"/@andrewbrown/status/{PARENT}"):
            browser.get(host + path)
            said = _shown(browser, "main .error").text
            assert said == (
                f"The Cruddur API did not answer at {host}: "
                "check the page's --api-url (CRUDDUR_API_URL)."
            ), path
            assert [b.text for b in _all(browser, "main button.more") if b.is_displayed()] == [
                "Try again"
            ]
        browser.get("about:blank")
    assert _console_problems(browser, ("status of 404",)) == []


def test_a_database_that_is_away_is_said_in_words(browser, tmp_path) -> None:
    nobody_listens = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/cruddur"
    env = {"CONNECTION_URL": nobody_listens, "CRUDDUR_HOME": str(tmp_path)}
    with serving(env, ready=(503,)) as site:
        browser.get(site + "/")
        _shown(browser, "main .status", "The database is not answering; retrying…")
        assert not _all(browser, "ol.feed > li")
        browser.get("about:blank")  # stop the retries before the server goes
    assert _console_problems(browser, allowed=("503",)) == []


def test_a_post_refused_while_the_database_is_away_is_not_said_to_be_retried(
    browser, tmp_path
) -> None:
    # Reads are retried while the database is away; a post is not, so its form must not
    # say "retrying" (the reader would wait for a crud that never comes).
    nobody_listens = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/cruddur"
    env = {"CONNECTION_URL": nobody_listens, "CRUDDUR_HOME": str(tmp_path)}
    with serving(env, ready=(503,)) as site:
        token = DevKeys(tmp_path).mint(Settings.from_env(env).auth, "MOCK-andrewbrown")
        session = {"source": "dev", "accessToken": token, "handle": "andrewbrown", "name": ""}
        browser.get(site + "/")
        browser.execute_script(
            "sessionStorage.setItem('cruddur.session', JSON.stringify("
            "{...arguments[0], expiresAt: Date.now() + 3600000}))",
            session,
        )
        browser.refresh()
        _shown(browser, "form.compose textarea").send_keys("Posted while the database is away")
        _css(browser, "form.compose button[type=submit]").click()
        said = _shown(browser, "form.compose .form-error", "database").text
        assert said == "The database is not answering. Try again in a moment."
        _shown(browser, "main .status", "The database is not answering; retrying…")  # reads
        browser.get("about:blank")  # stop the retries before the server goes
    assert _console_problems(browser, allowed=("503",)) == []


# Before the page's own scripts: its waits of a second or more are noted and cut to none.
_NO_WAITING = """
window.waits = []; const wait = window.setTimeout;
window.setTimeout = (run, ms, ...rest) => {
  if (ms >= 1000) { window.waits.push(ms); ms = 0; }
  return wait(run, ms, ...rest);
};
"""


def test_a_503_not_from_the_database_keeps_its_own_words(
    browser, admin: psycopg.Connection, server_url: str, tmp_path
) -> None:
    # Every 503 was retried as the database's, then called "The database is still not
    # answering": a database without its schema (or a load balancer's 503) said so too.
    name = f"cruddur_test_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))  # no schema
    env = {"CONNECTION_URL": with_database(server_url, name), "CRUDDUR_HOME": str(tmp_path)}
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": _NO_WAITING}
    )
    try:
        with serving(env, ready=(503,)) as site:
            browser.get(site + "/")
            said = _shown(browser, "main .error").text  # given up, after five retries
            assert "the database has no schema yet" in said, said
            assert "not answering" not in said
            # Retried no sooner than Retry-After (1 s) and the page's own backoff say.
            assert browser.execute_script("return window.waits") == [1000, 2000, 4000, 8000, 8000]
            browser.get("about:blank")
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", script)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    assert _console_problems(browser, allowed=("503",)) == []


@pytest.fixture
def lagging_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cruddur serve` reading from a real streaming replica that replays nothing of this
    test's writes (an hour's `recovery_min_apply_delay`) yet stays in use (a lag limit of
    two hours): a read the replica serves cannot show them."""
    pair = ReplicaPair(tmp_path_factory.mktemp("web-replica")).create()
    try:
        pair.set_apply_delay(3_600_000)
        env = {
            "CONNECTION_URL": pair.primary_url,
            "READER_CONNECTION_URL": pair.replica_url,
            "CRUDDUR_REPLICA_MAX_LAG": "7200",
            "CRUDDUR_FEED_CACHE": "0",  # every read reaches a database
            "CRUDDUR_HOME": str(tmp_path_factory.mktemp("web-replica-home")),
        }
        with serving(env) as base:
            deadline = time.monotonic() + 30  # until a worker's first look finds it well
            while not json.loads(request(f"{base}/api/health")[2])["replica"]["in_use"]:
                assert time.monotonic() < deadline, "the replica was never in use"
                time.sleep(0.2)
            yield base
    finally:
        pair.remove()


def test_the_page_reads_its_own_writes_from_a_lagging_replica(browser, lagging_site) -> None:
    site, message = lagging_site, f"Read after write {uuid.uuid4().hex[:8]}"
    browser.get(site + "/signin")
    Select(_shown(browser, "select#dev-handle option[value=andrewbrown]").find_element(
        "xpath", "..")).select_by_value("andrewbrown")  # fmt: skip
    _css(browser, "form button[type=submit]").click()
    _shown(browser, "form.compose textarea").send_keys(message)
    _css(browser, "form.compose button[type=submit]").click()
    _wait(browser, lambda d: _messages(d)[:1] == [message])  # the 201's crud, not a read
    kept = json.loads(browser.execute_script("return sessionStorage.getItem('cruddur.readAfter')"))
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+\.[0-9]+\.[A-Za-z0-9_-]{22}", kept["position"]), kept
    # Sent for the replica's lag limit (2 h here), its look interval and the kept page's 6 s.
    left = kept["until"] / 1000 - browser.execute_script("return Date.now() / 1000")
    assert 7200 < left <= 7208, left

    # Reads after the write: its crud page, the home feed, and the home feed after a
    # reload of the tab. Each shows the write only if the page sent X-Read-After back
    # (the primary then serves it): the replica has not replayed it, as shown below.
    _css(_all(browser, "ol.feed > li")[0], "a.when").click()
    shown = lambda d: _css(d, "article.crud-main").text  # noqa: E731
    _wait(browser, lambda d: message in shown(d) and "@andrewbrown" in shown(d))
    crud_uuid = browser.current_url.rsplit("/", 1)[1]
    _css(browser, "a.brand").click()
    _wait(browser, lambda d: _messages(d)[:1] == [message])
    browser.refresh()
    _wait(browser, lambda d: _messages(d)[:1] == [message])

    # The same reads without the header: the replica serves them, and has not seen it.
    status, _, body = request(f"{site}/api/activities/home")
    assert status == 200 and message not in body.decode()
    assert request(f"{site}/api/activities/{crud_uuid}")[0] == 404
    assert _console_problems(browser) == []

    # A kept position the server did not sign (another instance's key, one made anew at a
    # restart): its 400 costs the tab the header, not the page; the feed is the replica's.
    signed, _, tag = kept["position"].rpartition(".")
    forged = {"position": f"{signed}.{'A' * len(tag)}", "until": kept["until"]}
    browser.execute_script(
        "sessionStorage.setItem('cruddur.readAfter', JSON.stringify(arguments[0]))", forged
    )
    browser.refresh()
    _wait(browser, lambda d: len(_messages(d)) > 0)
    assert message not in _messages(browser)
    assert browser.execute_script("return sessionStorage.getItem('cruddur.readAfter')") is None
    assert _console_problems(browser, allowed=("400",)) == []


def _feed_read_headers(browser) -> dict:
    """The headers of the home feed read that a click on the brand link sends."""
    browser.execute_script(
        "window.sentHeaders = null; const original = window.fetch;"
        "window.fetch = (url, options) => {"
        "  if (String(url).endsWith('/api/activities/home')) window.sentHeaders = options.headers;"
        "  return original(url, options); };"
    )
    _css(browser, "a.brand").click()
    return _wait(browser, lambda d: d.execute_script("return window.sentHeaders"))


def test_a_tab_sends_x_read_after_only_while_a_write_may_be_unseen(browser, site: str) -> None:
    # Past the window a read without the header shows the write anyway; sent for the tab's
    # whole life, it kept every home feed read of the tab off the server's kept page.
    browser.get(site + "/")
    _shown(browser, "ol.feed > li")
    config = json.loads(
        browser.execute_script("return document.querySelector('meta[name=cruddur-config]').content")
    )
    assert config["readAfterSeconds"] == 8  # 5 s lag limit, 1 s looks, 1 + 1 s kept page
    keep = "sessionStorage.setItem('cruddur.readAfter', JSON.stringify(arguments[0]))"
    now_ms = browser.execute_script("return Date.now()")
    browser.execute_script(keep, {"position": "0/16B3748", "until": now_ms + 60_000})
    browser.refresh()
    _shown(browser, "ol.feed > li")
    assert _feed_read_headers(browser).get("X-Read-After") == "0/16B3748"

    browser.execute_script(keep, {"position": "0/16B3748", "until": now_ms - 1})
    browser.refresh()
    _shown(browser, "ol.feed > li")
    assert "X-Read-After" not in _feed_read_headers(browser)
    assert browser.execute_script("return sessionStorage.getItem('cruddur.readAfter')") is None
    assert _console_problems(browser) == []


def test_a_refused_read_after_costs_only_the_value_that_was_sent(browser, site: str) -> None:
    # The page's own api.js, with fetch standing in for a server that refuses the kept
    # value (another instance's key, a restart's new one). Two reads in flight with it:
    # the second found the value already forgotten, did not retry, and failed the page.
    # A write answered meanwhile: the first read's refusal forgot the write's new value.
    browser.get(site + "/")
    _shown(browser, "ol.feed > li")
    stale = {
        "position": "0/1.1.stale",
        "until": browser.execute_script("return Date.now()") + 60_000,
    }
    browser.execute_script(
        "sessionStorage.setItem('cruddur.readAfter', JSON.stringify(arguments[0]))", stale
    )
    browser.refresh()  # the page's module reads the kept value as it loads
    _shown(browser, "ol.feed > li")
    outcome = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const main = document.querySelector('script[type=module]').src;
        const api = await import(main.replace(/main\\.js$/, 'api.js'));
        const json = (status, body, headers = {}) => new Response(JSON.stringify(body),
          {status, headers: {'Content-Type': 'application/json', ...headers}});
        const sent = [];
        let next = null;  // the X-Read-After the next POST is answered with
        window.fetch = async (url, options) => {
          const method = options.method || 'GET';
          const position = options.headers['X-Read-After'] || null;
          sent.push([method, position]);
          await new Promise((r) => setTimeout(r, method === 'GET' ? 100 : 10));
          if (position && position.endsWith('.stale'))
            return json(400, {error: 'invalid_read_after'});
          if (method === 'POST') return json(201, {uuid: 'x'}, {'X-Read-After': next});
          return json(200, []);
        };
        const home = () => api.request('/api/activities/home');
        const post = (position) => { next = position;
          return api.request('/api/activities', {method: 'POST', body: {}}); };
        try {
          // Two reads in flight with the kept value the server refuses.
          const both = await Promise.allSettled([home(), home()]);
          // A read in flight with a refused value while a write keeps a new one.
          await post('0/1.1.stale');
          const reading = home();
          await post('0/2.9999999999.fresh');
          const last = await Promise.allSettled([reading]);
          await home();
          done({both: both.map((r) => r.status), last: last[0].status, sent,
                kept: JSON.parse(sessionStorage.getItem('cruddur.readAfter')).position});
        } catch (error) {
          done({error: String(error)});
        }
        """
    )
    assert outcome.get("both") == ["fulfilled", "fulfilled"], outcome
    assert outcome["last"] == "fulfilled", outcome
    assert outcome["sent"][-1] == ["GET", "0/2.9999999999.fresh"], outcome  # still sent
    assert outcome["kept"] == "0/2.9999999999.fresh", outcome
    assert _console_problems(browser) == []


def _fill(browser, form: str, **values: str) -> None:
    for name, value in values.items():
        field = _css(browser, f"{form} [name={name}]")
        field.clear()
        field.send_keys(value)
    _css(browser, f"{form} button[type=submit]").click()


def _sign_up(browser, name: str, handle: str) -> None:
    """The sign-up form, with Sarah's email and password (the same in each attempt)."""
    _fill(
        browser,
        "form.auth",
        name=name,
        handle=handle,
        email="sarah@example.com",
        password="Correct-Horse-9!",
    )


def _confirmation_event(idp, pool_id: str, username: str) -> dict:
    """What Cognito hands the post-confirmation trigger after ConfirmSignUp."""
    user = idp.admin_get_user(UserPoolId=pool_id, Username=username)
    return {
        "version": "1",
        "region": "us-east-1",
        "userPoolId": pool_id,
        "userName": user["Username"],
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "web"},
        "triggerSource": post_confirmation.SIGN_UP,
        "request": {"userAttributes": {a["Name"]: a["Value"] for a in user["UserAttributes"]}},
        "response": {},
    }


def test_cognito_sign_up_confirm_sign_in_and_post(
    browser, web_db: str, aws, moto_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = client("cognito-idp")
    pool_id, client_id = user_pool("ALLOW_USER_PASSWORD_AUTH")
    env = {
        "CONNECTION_URL": web_db,
        "CRUDDUR_HOME": str(tmp_path),
        "AWS_COGNITO_USER_POOL_ID": pool_id,
        "AWS_COGNITO_USER_POOL_CLIENT_ID": client_id,
        "CRUDDUR_JWKS_URL": f"{moto_url}/{pool_id}/.well-known/jwks.json",
        "CRUDDUR_COGNITO_URL": moto_url,  # the page talks to moto's Cognito, not AWS
    }
    with serving(env) as site:
        # With a pool there is no "sign in as": the routes do not exist.
        assert request(f"{site}/api/dev/users")[0] == 404
        assert request(f"{site}/api/dev/sign-in", method="POST", data=b"{}")[0] == 404
        browser.get(site + "/signin")
        _shown(browser, "form.auth input[type=email]")
        assert not _all(browser, "#dev-handle")

        _css(browser, "#nav a[href='/signup']").click()
        _shown(browser, "h1", "Create your account")
        _css(browser, "form.auth button[type=submit]").click()  # nothing filled in
        _shown(browser, "form.auth .field-error", "Name is needed.")
        assert _css(browser, "form.auth [name=email]").get_attribute("aria-invalid") == "true"
        _sign_up(browser, name="Sarah Connor", handle="sconnor")
        _shown(browser, ".flash", "We sent a confirmation code to sarah@example.com.")
        assert browser.current_url == f"{site}/confirm"
        browser.back()  # the same email again: Cognito's UsernameExistsException, in words
        _sign_up(browser, name="Sarah Again", handle="sarah2")
        _shown(browser, "form.auth .form-error", "An account with this email already exists.")
        assert browser.current_url == f"{site}/signup"

        # Signing in before confirming leads back to the confirm page, in words.
        _css(browser, "#nav a[href='/signin']").click()
        _fill(browser, "form.auth", email="sarah@example.com", password="Correct-Horse-9!")
        _shown(browser, ".flash", "This account is not confirmed yet")
        assert _css(browser, "form.auth [name=email]").get_attribute("value") == (
            "sarah@example.com"
        )
        _fill(browser, "form.auth", code="123456")
        _shown(browser, ".flash", "Your account is confirmed.")
        assert browser.current_url == f"{site}/signin"

        _fill(browser, "form.auth", email="sarah@example.com", password="wrong-Horse-9!")
        _shown(browser, "form.auth .form-error", "Wrong email or password.")
        _fill(browser, "form.auth", password="Correct-Horse-9!")
        _shown(browser, ".flash", "You are signed in.")
        assert _css(browser, "#nav .me").text == "@sconnor"
        # Back to the confirm form, signed in: said, not the form again (a review).
        browser.back()
        _wait(browser, lambda d: d.execute_script("return location.pathname") == "/confirm")
        _shown(browser, "main .status", "You are signed in as @sconnor.")
        assert not _all(browser, "form.auth")
        browser.forward()
        _wait(browser, lambda d: d.execute_script("return location.pathname") == "/")

        # No row yet (the trigger has not run): the page explains the API's 403.
        textarea = _shown(browser, "form.compose textarea")
        textarea.send_keys("My first crud")
        _css(browser, "form.compose button[type=submit]").click()
        _shown(browser, "form.compose .form-error", "profile has not been created yet")

        # Standing in for Cognito: the post-confirmation trigger, with the confirm event.
        monkeypatch.setenv("CONNECTION_URL", web_db)
        monkeypatch.delenv("CONNECTION_SECRET_ARN", raising=False)
        post_confirmation.close()
        try:
            post_confirmation.handler(_confirmation_event(idp, pool_id, "sarah@example.com"))
        finally:
            post_confirmation.close()
        # An access token that has run out is refreshed (REFRESH_TOKEN_AUTH) before the post.
        browser.execute_script(
            "const s = JSON.parse(sessionStorage.getItem('cruddur.session'));"
            "s.accessToken = 'stale'; s.expiresAt = 0;"
            "sessionStorage.setItem('cruddur.session', JSON.stringify(s));"
        )
        browser.refresh()
        # Cognito out of reach for that refresh: said, and the reader stays signed in with
        # the words kept (it signed them out, as a refused refresh token does).
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"{moto_url}/*"]})
        try:
            _shown(browser, "form.compose textarea").send_keys("My first crud")
            _css(browser, "form.compose button[type=submit]").click()
            _shown(browser, "form.compose .form-error", "Cannot reach the sign-in service")
            assert _css(browser, "#nav .me").text == "@sconnor"
        finally:
            browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        _console_problems(browser)  # the blocked request's own line
        assert _css(browser, "form.compose textarea").get_attribute("value") == "My first crud"
        _css(browser, "form.compose button[type=submit]").click()
        _wait(browser, lambda d: _messages(d)[:1] == ["My first crud"])
        session = browser.execute_script("return sessionStorage.getItem('cruddur.session')")
        assert json.loads(session)["accessToken"].count(".") == 2
        top = _all(browser, "ol.feed > li")[0]
        assert "Sarah Connor" in top.text and "@sconnor" in top.text
        _css(browser, "#nav button").click()  # sign out
        _shown(browser, ".flash", "You are signed out.")
        _shown(browser, "ol.feed > li", "My first crud")
        browser.get("about:blank")  # nothing left to ask the server, which stops now
    # Cognito answers 400 to a wrong password; the API 403 to a user with no row, 404 to
    # the sign-up's look for a user with the handle.
    assert _console_problems(browser, allowed=("400", "403", "404")) == []


_COGNITO_ANSWERS = """
// Cognito's answers moto does not give: each call answered with the refusal `answers`
// names for its action, every request's signal kept.
window.signals = [];
const answers = arguments[0];
window.fetch = async (url, options) => {
  window.signals.push(options.signal instanceof AbortSignal);
  const action = options.headers["X-Amz-Target"].split(".").pop();
  const [type, message] = answers[action];
  return new Response(JSON.stringify({__type: type, message}), {status: 400});
};
"""


def test_cognito_refusals_are_said_for_what_was_asked(
    browser, web_db: str, aws, moto_url: str, tmp_path
) -> None:
    # A review: a handle the schema refuses ("@yara", as the page shows handles) made a
    # Cognito account that could never get a profile; "Wrong email or password." was said
    # of a confirm, of an account confirmed already and of one locked out; and a Cognito
    # that hung kept the form waiting for ever.
    idp = client("cognito-idp")
    pool_id, client_id = user_pool("ALLOW_USER_PASSWORD_AUTH")
    env = {
        "CONNECTION_URL": web_db,
        "CRUDDUR_HOME": str(tmp_path),
        "AWS_COGNITO_USER_POOL_ID": pool_id,
        "AWS_COGNITO_USER_POOL_CLIENT_ID": client_id,
        "CRUDDUR_JWKS_URL": f"{moto_url}/{pool_id}/.well-known/jwks.json",
        "CRUDDUR_COGNITO_URL": moto_url,
    }
    with serving(env) as site:
        browser.get(site + "/signup")
        _sign_up(browser, name="Yara", handle="ya ra")
        _shown(browser, "form.auth .field-error", "Use 1 to 64 letters, digits and . _ + -")
        assert idp.list_users(UserPoolId=pool_id)["Users"] == []  # nothing made
        _sign_up(browser, name="Yara", handle="AndrewBrown")  # a seed user's, in any case
        _shown(browser, "form.auth .field-error", "@AndrewBrown is taken: pick another")
        assert idp.list_users(UserPoolId=pool_id)["Users"] == []
        _sign_up(browser, name="Yara", handle="@yara")  # the "@" is the page's, not hers
        _shown(browser, ".flash", "We sent a confirmation code to sarah@example.com.")
        (user,) = idp.list_users(UserPoolId=pool_id)["Users"]
        attributes = {a["Name"]: a["Value"] for a in user["Attributes"]}
        assert attributes["preferred_username"] == "yara"

        browser.get(site + "/confirm")
        browser.execute_script(
            _COGNITO_ANSWERS,
            {"ConfirmSignUp": ["NotAuthorizedException",
                               "User cannot be confirmed. Current status is CONFIRMED"]},
        )  # fmt: skip
        _fill(browser, "form.auth", email="sarah@example.com", code="123456")
        _shown(browser, "form.auth .form-error", "This account is confirmed already: sign in.")
        browser.get(site + "/confirm")
        browser.execute_script(
            _COGNITO_ANSWERS,
            {"ConfirmSignUp": ["UserNotFoundException", "Username/client id not found"]},
        )  # fmt: skip
        _fill(browser, "form.auth", email="nobody@example.com", code="123456")
        _shown(browser, "form.auth .form-error", "No account has this email: sign up first.")
        browser.get(site + "/signin")
        browser.execute_script(
            _COGNITO_ANSWERS,
            {"InitiateAuth": ["NotAuthorizedException", "Password attempts exceeded"]},
        )
        _fill(browser, "form.auth", email="sarah@example.com", password="Correct-Horse-9!")
        _shown(browser, "form.auth .form-error", "Password attempts exceeded")
        # Every call can be given up (AbortSignal.timeout), not only a refused connection.
        assert browser.execute_script("return window.signals") == [True]
        browser.get("about:blank")
    # Cognito's refusals (400), and the handle free (404: no user has it).
    assert _console_problems(browser, allowed=("400", "404")) == []


def test_a_user_page_in_another_case_shows_the_stored_handle(browser, site: str) -> None:
    # /@LONDO said "@LONDO" under the name and in the title, though each crud said @londo.
    browser.get(site + "/@LONDO")
    _shown(browser, ".page-head .sub", "@")
    assert _css(browser, "h1").text == "Londo Mollari"
    assert _css(browser, ".page-head .sub").text == "@londo"
    assert "(@londo)" in browser.title
    assert browser.execute_script("return location.pathname") == "/@londo"


def test_sign_in_with_no_local_users_says_so(browser, empty_db: str, tmp_path) -> None:
    # The list was empty without a word, and "Sign in" sent "" and showed the API's
    # words for developers (a 400).
    with Db(empty_db) as db:
        loading.load(db, loading.SCHEMA)
    with serving({"CONNECTION_URL": empty_db, "CRUDDUR_HOME": str(tmp_path)}) as base:
        browser.get(base + "/signin")
        _shown(browser, "main p.error", "No local users yet")
        _css(browser, "form.auth button[type=submit]").click()
        _shown(browser, "form.auth .form-error", "No local user to sign in as")
        assert "Send" not in _css(browser, "form.auth .form-error").text
