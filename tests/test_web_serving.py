"""The web front end as served: its routes, headers, assets, and the dev sign-in routes
(which exist only without a Cognito pool, and answer only this machine)."""

from __future__ import annotations

import html
import json
import re
from importlib.resources import files

import pytest
from api_support import CheckedClient, app_for

PAGE_SIZE_LIMIT = 60_000  # bytes, HTML + CSS + JS, before compression
UNSAFE_JS = re.compile(
    r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|\beval\(|document\.write|new Function"
)


def _config(page: str) -> dict:
    match = re.search(r'<meta name="cruddur-config" content="([^"]*)">', page)
    assert match, "the page carries its settings in a meta tag"
    return json.loads(html.unescape(match.group(1)))


def _page(client, path: str = "/", **kwargs):
    response = client.get(path, **kwargs)
    return response, response.get_data(as_text=True)


def test_the_original_routes_serve_the_page_under_a_strict_csp(app) -> None:
    client = app.test_client()
    paths = ("/", "/@andrewbrown", "/@andrewbrown/status/x", "/status/x", "/signin", "/signup",
             "/confirm")  # fmt: skip
    for path in paths:
        response, page = _page(client, path)
        assert response.status_code == 200, path
        assert response.mimetype == "text/html"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    csp = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["require-trusted-types-for"] == "'script'"  # innerHTML with a string throws
    assert "unsafe" not in policy
    assert "<script>" not in page and " style=" not in page and " on" not in page.lower()
    assert _config(page) == {
        "api": "",
        "cognito": None,
        "devSignIn": True,
        "readAfterSeconds": 8,
    }

    # One trailing slash is the same page (the page drops it); the API's paths are not.
    for path in ("/@andrewbrown/", "/@andrewbrown/status/x/", "/signin/", "/confirm/"):
        assert _page(client, path)[0].status_code == 200, path
    assert client.get("/api/activities/home/").status_code == 404
    assert client.get("/api/activities/home/").mimetype == "application/json"
    response, page = _page(client, "/no/such/page")
    assert response.status_code == 404 and response.mimetype == "text/html"
    missing = client.get("/api/no-such-endpoint")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"


def test_assets_are_fingerprinted_cached_for_a_year_and_small(app) -> None:
    client = app.test_client()
    _, page = _page(client)
    urls = sorted(set(re.findall(r'(?:href|src)="(/assets/[^"]+)"', page)))
    assert {url.rsplit("/", 1)[1] for url in urls} >= {"main.js", "style.css", "views.js"}
    fingerprint = urls[0].split("/")[2]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    total = len(page.encode())
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for name, asset in app.extensions["cruddur.web"].files.items():
        total += len(asset.body)
        if name.endswith(".js"):
            assert client.get(f"/assets/{fingerprint}/{name}").mimetype == "text/javascript"
            # Nothing that parses HTML from a string, and no eval.
            found = UNSAFE_JS.search(asset.body.decode())
            assert found is None, f"{name} uses {found and found.group()}"
    assert total < PAGE_SIZE_LIMIT, f"the page weighs {total} bytes"
    assert client.get(f"/assets/{'0' * 16}/main.js").status_code == 404  # an old page
    assert client.get(f"/assets/{fingerprint}/nothing.js").status_code == 404


def test_scripts_and_styles_are_sent_without_comments(app) -> None:
    sent = app.extensions["cruddur.web"].files
    for name, source in _sources().items():
        if name.endswith((".js", ".css")):
            assert len(sent[name].body) < 0.85 * len(source), name
            assert b"\n//" not in sent[name].body and b"/*" not in sent[name].body, name
        else:
            assert sent[name].body == source, name
        if name.endswith(".js"):
            # rJSmin keeps a template literal whole only when none is nested in another's
            # ${…}: it cut such a script at the inner one. Written without them.
            assert not _template_in_a_template(source.decode()), f"{name}: a nested template"


def _template_in_a_template(source: str) -> bool:
    """Whether a backtick comes before the `}` that closes a `${` (its braces counted);
    cautious: a `${` in a comment or string is looked into too."""
    at = 0
    while (start := source.find("${", at)) != -1:
        depth, at = 1, start + 2
        while depth and at < len(source):
            char = source[at]
            if char == "`":
                return True
            depth += (char == "{") - (char == "}")
            at += 1
    return False


def test_a_template_in_a_template_is_found() -> None:
    assert _template_in_a_template("`x ${ f({k: 1}) + `y` } w`")  # after a brace
    assert _template_in_a_template("`${`y`}`")
    assert not _template_in_a_template("`${a} and ${ {b: 1}.b }` + `c`")


def _sources() -> dict[str, bytes]:
    static = files("cruddur.web").joinpath("static")
    return {e.name: e.read_bytes() for e in static.iterdir() if e.name != "index.html"}


@pytest.mark.parametrize(
    "path",
    [f"/assets/{'0' * 16}/main.js", "/assets/{fp}/nothing.js", "/assets/x", "//assets/x/y/z"],
)
def test_a_missing_asset_is_a_404_nobody_keeps(app, path: str) -> None:
    # In a rolling deploy the new page can ask an old server for its new fingerprint: a
    # CDN that kept that 404 would serve it for the asset's whole life.
    client = app.test_client()
    path = path.format(fp=app.extensions["cruddur.web"].fingerprint)
    for method in ("GET", "HEAD"):
        answer = client.open("/", method=method, environ_overrides={"PATH_INFO": path})
        assert answer.status_code == 404, (method, path)
        assert answer.headers.getlist("Cache-Control") == ["no-store"], (method, path)
        assert answer.content_type == "application/json"
    # The page's own 404 (a mistyped address) is the page, checked each time.
    assert client.get("/no/such/page").headers["Cache-Control"] == "no-cache"


def test_dev_sign_in_gives_a_token_that_posts(api: CheckedClient) -> None:
    users = api.get("/api/dev/users")
    assert users.status_code == 200
    assert [u["handle"] for u in users.get_json()] == ["andrewbrown", "bayko", "londo"]
    signed = api.post("/api/dev/sign-in", json={"handle": "bayko"})
    assert signed.status_code == 200 and signed.get_json()["expires_in"] == 3600
    assert signed.headers.getlist("Cache-Control") == ["no-store"]
    token = signed.get_json()["access_token"]
    posted = api.post("/api/activities", json={"message": "hi", "ttl": "1-hour"}, token=token)
    assert posted.status_code == 201 and posted.get_json()["handle"] == "bayko"
    assert api.post("/api/dev/sign-in", json={"handle": "nobody"}).status_code == 404
    # Handles are one per person whatever their case: BAYKO signs in as bayko.
    cased = api.post("/api/dev/sign-in", json={"handle": "BAYKO"})
    assert cased.status_code == 200 and cased.get_json()["handle"] == "bayko"
    token = cased.get_json()["access_token"]
    posted = api.post("/api/activities", json={"message": "hi", "ttl": "1-hour"}, token=token)
    assert posted.status_code == 201 and posted.get_json()["handle"] == "bayko"
    for body in ({}, {"handle": ""}, {"handle": 7}, {"handle": "x" * 65}, {"handle": "a\x00"}):
        assert api.post("/api/dev/sign-in", json=body).status_code == 400


def test_dev_sign_in_takes_only_a_json_body(api: CheckedClient) -> None:
    # A page on another site may POST a form or text/plain to localhost without a CORS
    # preflight; it cannot send application/json so. Such a POST gets no token.
    body = b'{"handle": "bayko"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        kwargs = {"content_type": content_type} if content_type else {}
        answer = api.post("/api/dev/sign-in", data=body, **kwargs)
        assert answer.status_code == 415, (content_type, answer.get_json())
        assert answer.get_json()["error"] == "unsupported_media_type"
        assert "access_token" not in answer.get_json()
    json_typed = api.post("/api/dev/sign-in", data=body, content_type="application/json")
    assert json_typed.status_code == 200


@pytest.mark.parametrize(
    "environ",
    [
        {"REMOTE_ADDR": "10.0.0.5"},  # another machine, on a server bound to 0.0.0.0
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},  # via a proxy
        {"REMOTE_ADDR": "::1", "HTTP_FORWARDED": "for=203.0.113.9"},
        # Local forwarders that send only one of these got a token for any user.
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_VIA": "1.1 nginx"},
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_TRUE_CLIENT_IP": "203.0.113.9"},
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_CF_CONNECTING_IP": "203.0.113.9"},
        {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_HOST": "cruddur.example"},
    ],
)
def test_dev_sign_in_answers_only_this_machine(app, environ: dict) -> None:
    api = CheckedClient(app)
    api.client.environ_base.update(environ)
    assert api.get("/api/dev/users").status_code == 404
    assert api.post("/api/dev/sign-in", json={"handle": "bayko"}).status_code == 404
    _, page = _page(app.test_client(), environ_base=environ)
    assert _config(page)["devSignIn"] is False


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:4567", "127.0.0.1.nip.io"])
def test_dev_sign_in_refuses_a_rebound_dns_name(app, host: str) -> None:
    # A page on attacker.example whose name now resolves to 127.0.0.1 (DNS rebinding):
    # the browser connects from loopback, but sends the page's own name as Host.
    api = CheckedClient(app)
    headers = {"Host": host}
    assert api.get("/api/dev/users", headers=headers).status_code == 404
    assert (
        api.post("/api/dev/sign-in", json={"handle": "bayko"}, headers=headers).status_code == 404
    )
    # Local names and addresses, with or without a port, still work.
    for local in ("localhost", "localhost:4567", "127.0.0.1:4567", "[::1]:4567"):
        assert api.get("/api/dev/users", headers={"Host": local}).status_code == 200, local


def test_no_dev_sign_in_with_a_cognito_pool(api_home, seeded_db: str) -> None:
    with app_for(
        api_home,
        seeded_db,
        AWS_COGNITO_USER_POOL_ID="ca-central-1_AbCd1234",
        AWS_COGNITO_USER_POOL_CLIENT_ID="client123",
        CRUDDUR_API_URL="https://api.cruddur.example",
    ) as app:
        api = CheckedClient(app)
        assert api.get("/api/dev/users").status_code == 404
        assert api.post("/api/dev/sign-in", json={"handle": "bayko"}).status_code == 404
        response, page = _page(app.test_client(), "/signin")
        assert _config(page) == {
            "api": "https://api.cruddur.example",
            "cognito": {
                "url": "https://cognito-idp.ca-central-1.amazonaws.com",
                "userPoolId": "ca-central-1_AbCd1234",
                "clientId": "client123",
            },
            "devSignIn": False,
            "readAfterSeconds": 8,
        }
        csp = response.headers["Content-Security-Policy"]
        assert (
            "connect-src 'self' https://api.cruddur.example "
            "https://cognito-idp.ca-central-1.amazonaws.com;" in csp
        )


def _build(tmp_path, env: dict[str, str]):
    """`web build` into tmp_path/site for https://api.x.example; the folder it wrote."""
    from helpers import ROOT, run

    out = tmp_path / "site"
    built = run(
        ROOT / ".venv/bin/cruddur", "web", "build", str(out), "--api-url", "https://api.x.example",
        env=env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    # Framing can only be refused by a header, which the host must send.
    assert "Content-Security-Policy: frame-ancestors 'none'" in built.stderr
    return out


def test_web_build_writes_the_page_for_a_static_host(tmp_path) -> None:
    from helpers import ROOT, run

    env = {
        "CRUDDUR_HOME": str(tmp_path / "home"),
        "AWS_COGNITO_USER_POOL_ID": "ca-central-1_AbCd1234",
        "AWS_COGNITO_USER_POOL_CLIENT_ID": "client123",
    }
    out = _build(tmp_path, {**env, "CRUDDUR_REPLICA_MAX_LAG": "60"})
    page = (out / "index.html").read_text()
    # The API's replica lag: the page reads its own writes that long after one (it kept
    # the default 8 s, whatever the README told the builder to set).
    assert _config(page)["readAfterSeconds"] == 8 - 5 + 60  # 5 s: the lag's default
    out = _build(tmp_path, env)
    page = (out / "index.html").read_text()
    assert _config(page) == {
        "api": "https://api.x.example",
        "cognito": {
            "url": "https://cognito-idp.ca-central-1.amazonaws.com",
            "userPoolId": "ca-central-1_AbCd1234",
            "clientId": "client123",
        },
        "devSignIn": False,
        "readAfterSeconds": 8,
    }
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page).group(1)
    assert "connect-src 'self' https://api.x.example https://cognito-idp." in policy
    assert "script-src 'self'" in policy and "require-trusted-types-for 'script'" in policy
    for url in re.findall(r'(?:href|src)="/(assets/[^"]+)"', page):
        assert (out / url).is_file(), url
    before = (out / "index.html").read_bytes()
    # Not a URL, or one that would end the policy's directive or its HTML attribute.
    for given in ("ftp://x", 'http://x"y', "http://x;script-src *", "http://x y", "http://<x>"):
        bad = run(ROOT / ".venv/bin/cruddur", "web", "build", str(out), "--api-url", given, env=env)
        assert bad.returncode == 1, given
        assert "--api-url must be an http:// or https:// URL" in bad.stderr, bad.stderr
        assert bad.stderr.strip().count("\n") <= 1, bad.stderr  # an error and a hint
    assert (out / "index.html").read_bytes() == before  # nothing written


def test_web_build_without_an_api_url_says_where_the_page_will_ask(tmp_path) -> None:
    # Built without --api-url, the page asks its own origin's /api/…: a static host that
    # answers every path with index.html left it saying "rows is not iterable". The build
    # said nothing of it.
    from helpers import ROOT, run

    env = {"CRUDDUR_HOME": str(tmp_path / "home")}
    built = run(ROOT / ".venv/bin/cruddur", "web", "build", str(tmp_path / "site"), env=env)
    assert built.returncode == 0, built.stderr
    said = [line for line in built.stderr.splitlines() if "--api-url" in line]
    assert said == [
        "no --api-url (CRUDDUR_API_URL): the page will ask its own origin's /api/…, "
        "so that host must pass /api/ on to the API"
    ], built.stderr
    given = run(
        ROOT / ".venv/bin/cruddur", "web", "build", str(tmp_path / "site"),
        "--api-url", "https://api.x.example", env=env,
    )  # fmt: skip
    assert given.returncode == 0 and "--api-url" not in given.stderr, given.stderr


def test_web_build_into_a_folder_it_cannot_write_is_one_line(tmp_path) -> None:
    from helpers import ROOT, run

    (tmp_path / "afile").write_text("")
    for folder in (tmp_path / "afile" / "site", "/proc/cruddur-site"):
        refused = run(
            ROOT / ".venv/bin/cruddur", "web", "build", str(folder),
            env={"CRUDDUR_HOME": str(tmp_path / "home")},
        )  # fmt: skip
        assert refused.returncode == 1
        assert "error: cannot write the page to " in refused.stderr, refused.stderr
        assert "unexpected" not in refused.stderr and "hint: give FOLDER" in refused.stderr


def test_web_build_never_writes_into_the_pages_own_folder(tmp_path, monkeypatch) -> None:
    # Built into src/cruddur/web/static, it wrote the page over the template every later
    # page (and `cruddur serve`'s) is made from: its placeholders gone for good.
    import shutil

    from cruddur.config import Settings
    from cruddur.web import build as building
    from cruddur.web.assets import STATIC

    source = tmp_path / "static"
    shutil.copytree(str(STATIC), source)
    monkeypatch.setattr(building, "STATIC", source, raising=False)
    template = (source / "index.html").read_bytes()
    settings = Settings.from_env({"CRUDDUR_HOME": str(tmp_path / "home")})
    for inside in (source, source / "assets", source / "." / "x" / ".."):
        with pytest.raises(building.InsideThePackage):
            building.build(settings, inside)
    assert (source / "index.html").read_bytes() == template
    assert not (source / "assets").exists()


def test_web_build_replaces_a_link_instead_of_writing_through_it(tmp_path) -> None:
    # index.html a link to a file elsewhere: the page was written over that file.
    from cruddur.config import Settings
    from cruddur.web.build import build

    site, victim = tmp_path / "site", tmp_path / "victim.txt"
    site.mkdir()
    victim.write_text("precious\n")
    (site / "index.html").symlink_to(victim)
    build(Settings.from_env({"CRUDDUR_HOME": str(tmp_path / "home")}), site, force=True)
    assert victim.read_text() == "precious\n"
    assert not (site / "index.html").is_symlink()
    assert (site / "index.html").read_text().startswith("<!doctype html>")


def test_web_build_refuses_a_folder_of_other_files_but_writes_over_an_earlier_build(
    tmp_path,
) -> None:
    # A review: `web build .` wrote the page into the checkout, `web build /` into /, and a
    # hand-written index.html in the folder was replaced without a word.
    from helpers import ROOT, run

    site = tmp_path / "site"
    site.mkdir()
    (site / ".gitkeep").touch()  # hidden files alone: an empty folder, as git keeps one
    kept = run(ROOT / ".venv/bin/cruddur", "web", "build", str(site))
    assert kept.returncode == 0, kept.stderr
    site = tmp_path / "other"
    site.mkdir()
    (site / "index.html").write_text("<h1>mine</h1>\n")
    refused = run(ROOT / ".venv/bin/cruddur", "web", "build", str(site))
    assert refused.returncode == 1
    assert "holds other files (index.html) and no earlier build" in refused.stderr
    assert "--force" in refused.stderr
    assert (site / "index.html").read_text() == "<h1>mine</h1>\n"
    forced = run(ROOT / ".venv/bin/cruddur", "web", "build", str(site), "--force")
    assert forced.returncode == 0, forced.stderr
    again = run(ROOT / ".venv/bin/cruddur", "web", "build", str(site))  # its own: fine
    assert again.returncode == 0, again.stderr


def test_web_build_reads_no_setting_it_does_not_use(tmp_path) -> None:
    from helpers import ROOT, run

    # Serving settings (PORT, CRUDDUR_WORKERS) are `serve`'s, the pool's, migrations' and
    # logs' the database's and the API's; CRUDDUR_API_URL is what --api-url replaces.
    # None of them, malformed, stops a build.
    env = {
        "CRUDDUR_HOME": str(tmp_path / "home"),
        "PORT": "http",
        "CRUDDUR_WORKERS": "many",
        "CRUDDUR_POOL_MAX_SIZE": "lots",
        "CRUDDUR_MIGRATION_LOCK_TIMEOUT": "soon",
        "CRUDDUR_LOG_LEVEL": "loud",
        "CRUDDUR_API_URL": "ftp://stale.example",
    }
    out = _build(tmp_path, env)
    assert _config((out / "index.html").read_text())["api"] == "https://api.x.example"
    # Without --api-url the build reads CRUDDUR_API_URL, and says which setting is wrong.
    refused = run(ROOT / ".venv/bin/cruddur", "web", "build", str(out), env=env)
    assert refused.returncode == 1
    assert "error: CRUDDUR_API_URL must be an http" in refused.stderr, refused.stderr


@pytest.mark.parametrize(
    "path", ["//api/health", "//api/activities/home", "///api/activities/@nobody", "/api"]
)
def test_extra_slashes_are_still_the_api_with_its_headers(app, path: str) -> None:
    # Not a way around the API's answers: its no-store, CORS and nosniff headers, and
    # JSON rather than the page's 404.
    client = app.test_client()
    answer = client.get(
        "/",
        environ_overrides={"PATH_INFO": path},
        headers={"Origin": "http://localhost:3000"},
    )
    assert answer.content_type == "application/json", (path, answer.status)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert "Origin" in answer.headers.getlist("Vary")  # a page adds Vary: X-Read-After
    if answer.status_code != 200:  # errors: stored nowhere
        assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["//@andrewbrown/", "//signin", "///", "//@andrewbrown"])
def test_a_page_path_with_leading_slashes_is_the_page_with_a_404(app, path: str) -> None:
    # werkzeug matched "//signin" as "/signin": a 200, where the page says "Page not found".
    answer = app.test_client().get("/", environ_overrides={"PATH_INFO": path})
    assert answer.status_code == 404 and answer.content_type.startswith("text/html")


@pytest.mark.parametrize("path", ["/api/activities//home", "/api//health"])
def test_doubled_slashes_inside_are_a_404_not_a_redirect_to_the_host_header(app, path: str) -> None:
    answer = app.test_client().get(
        "/", environ_overrides={"PATH_INFO": path}, headers={"Host": "evil.example"}
    )
    assert answer.status_code == 404 and answer.content_type == "application/json"
    assert "Location" not in answer.headers


def test_web_build_into_an_empty_folder_name_is_refused(tmp_path) -> None:
    # click reads "" as ".": `web build "$DIST"` with DIST unset wrote the page wherever
    # the command ran.
    from helpers import ROOT, run

    refused = run(
        ROOT / ".venv/bin/cruddur", "web", "build", "", env={"CRUDDUR_HOME": str(tmp_path)},
        cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "is empty: give the folder to write the page into" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
