"""Who may write: real RS256 tokens, from the dev key pair and from Cognito (moto)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
import time

import jwt
import psycopg
import pytest
from api_support import CheckedClient, app_for, snapshot
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import user_pool

from cruddur.api import create_app
from cruddur.api.keys import KeySet, KeysUnavailable, UnknownKey
from cruddur.config import ConfigError, Settings
from cruddur.dev_keys import DevKeys

NEW_CRUD = {"message": "signed in", "ttl": "1-day"}


def _post(api: CheckedClient, token: str | None, headers: dict | None = None, **kwargs):
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return api.post("/api/activities", json=NEW_CRUD, headers=headers, **kwargs)


def _refused(api: CheckedClient, seeded_db: str, token: str | None, status: int = 401, **kw):
    before = snapshot(seeded_db)
    response = _post(api, token, **kw)
    assert response.status_code == status, response.get_json()
    assert snapshot(seeded_db) == before
    return response


def _other_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_a_valid_token_posts_as_its_user(api, mint) -> None:
    response = _post(api, mint("londo"))
    assert response.status_code == 201
    assert response.get_json()["handle"] == "londo"


def test_no_token_is_401_with_a_bearer_challenge(api, seeded_db: str) -> None:
    response = _refused(api, seeded_db, None)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not.a.jwt", "Bearer " + "A" * 10_000, "Token abc"],
)
def test_malformed_authorization_is_401(api, seeded_db: str, header: str) -> None:
    response = _refused(api, seeded_db, None, headers={"Authorization": header})
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_refused_token_is_logged_with_the_request_id_as_a_field(
    api, seeded_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    # It was only inside the message: a Logs Insights filter on request_id missed it.
    with caplog.at_level(logging.INFO, logger="cruddur.api"):
        response = _refused(api, seeded_db, None, headers={"Authorization": "Bearer not.a.jwt"})
    (record,) = [r for r in caplog.records if "token refused" in r.getMessage()]
    assert record.request_id == response.headers["X-Request-Id"]


def test_expired_token_is_401(api, mint, seeded_db: str) -> None:
    past = int(time.time()) - 3600
    response = _refused(api, seeded_db, mint(claims={"exp": past, "iat": past - 60}))
    assert "expired" in response.get_json()["message"]


def test_token_signed_by_another_key_is_401(api, mint, api_settings, seeded_db: str) -> None:
    genuine = jwt.decode(mint(), options={"verify_signature": False})
    kid = DevKeys(api_settings.home).kid()
    forged = jwt.encode(genuine, _other_key_pem(), algorithm="RS256", headers={"kid": kid})
    _refused(api, seeded_db, forged)


def test_wrong_issuer_token_use_or_client_are_401(api, mint, seeded_db: str) -> None:
    wrong_pool = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_someoneelse"
    for claims, said in [
        ({"iss": wrong_pool}, "issuer"),
        ({"token_use": "id"}, "access token"),
        ({"client_id": "another-app"}, "app client"),
        # A review: PostgreSQL refused it in the user's lookup, a 422 for a valid body.
        ({"sub": "MOCK-\x00"}, "subject (sub) is not text PostgreSQL can store"),
        ({"sub": "MOCK-\ud800x"}, "subject (sub) is not text PostgreSQL can store"),
    ]:
        response = _refused(api, seeded_db, mint(claims=claims))
        assert said in response.get_json()["message"], claims


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def test_algorithm_confusion_is_401(api, mint, api_settings, seeded_db: str) -> None:
    claims = jwt.decode(mint(), options={"verify_signature": False})
    keys = DevKeys(api_settings.home)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": keys.kid()})
    _refused(api, seeded_db, unsigned)
    # HS256 keyed with the public key: accepted by a verifier that trusts the header's alg.
    jwks = json.loads(keys.jwks_path.read_text())
    public_pem = jwt.PyJWK(jwks["keys"][0]).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": keys.kid(), "typ": "JWT"}
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    _refused(api, seeded_db, (signing_input + b"." + _b64(signature)).decode())


def test_a_valid_token_without_a_user_row_is_403(api, mint, seeded_db: str) -> None:
    response = _refused(api, seeded_db, mint(sub="never-signed-up"), status=403)
    assert response.get_json()["error"] == "no_user"
    assert "sync-cognito" in response.get_json()["message"]


def test_unknown_key_ids_refetch_the_keys_at_most_once_a_minute(tmp_path) -> None:
    keys = DevKeys(tmp_path).ensure()
    fetches = []

    class CountingKeySet(KeySet):
        def _fetch(self):
            fetches.append(1)
            return super()._fetch()

    key_set = CountingKeySet(keys.jwks_path.as_uri())
    assert key_set.get(keys.kid()) is not None
    for _ in range(5):
        with pytest.raises(UnknownKey):
            key_set.get("no-such-kid")
    assert len(fetches) == 1
    # A rotated key set is picked up once the interval has passed.
    old_kid = keys.kid()
    keys.jwks_path.unlink()
    keys.private_path.unlink()
    keys.ensure()
    key_set.min_refresh = 0
    assert key_set.get(keys.kid()) is not None and keys.kid() != old_kid
    assert len(fetches) == 2


def test_keys_that_failed_to_load_stay_unavailable_not_unknown(tmp_path) -> None:
    keys = DevKeys(tmp_path).ensure()
    kid = keys.kid()
    published = keys.jwks_path.read_text()
    keys.jwks_path.unlink()  # the issuer is down
    key_set = KeySet(keys.jwks_path.as_uri(), retry_after_failure=60)
    for _ in range(3):  # the first fails; the next ones wait, still saying "unavailable"
        with pytest.raises(KeysUnavailable):
            key_set.get(kid)
    keys.jwks_path.write_text(published)  # the issuer is back
    key_set.retry_after_failure = 0
    assert key_set.get(kid) is not None
    with pytest.raises(UnknownKey):  # keys loaded: a kid they lack is the token's fault
        key_set.get("no-such-kid")


def test_unreachable_keys_are_503_not_401(api_home, seeded_db: str, mint, api_route) -> None:
    with app_for(
        api_home,
        seeded_db,
        **api_route.env(seeded_db),
        AWS_COGNITO_USER_POOL_ID="us-east-1_AbC123",
        AWS_COGNITO_USER_POOL_CLIENT_ID="web",
        CRUDDUR_JWKS_URL="http://127.0.0.1:9/jwks.json",
    ) as app:
        for _ in range(2):  # and again before the next attempt to fetch the keys
            response = _refused(CheckedClient(app), seeded_db, mint(), status=503)
            assert response.get_json()["error"] == "auth_unavailable"
            # Like the database's 503: when to come back, here the key set's next attempt
            # (KeySet's retry_after_failure, 5 s); sooner would only get this 503 again.
            assert response.headers["Retry-After"] == "5"


# -- fail closed: partial Cognito settings, the dev key pair off this machine ------------


@pytest.mark.parametrize(
    "cognito",
    [
        {"AWS_COGNITO_USER_POOL_CLIENT_ID": "web"},  # the pool id unset
        {"AWS_COGNITO_USER_POOL_ID": "", "AWS_COGNITO_USER_POOL_CLIENT_ID": "web"},  # blank
        {"AWS_COGNITO_USER_POOLID": "us-east-1_AbC1", "AWS_COGNITO_USER_POOL_CLIENT_ID": "web"},
    ],
)
def test_partial_cognito_settings_stop_the_app(api_home, seeded_db: str, cognito) -> None:
    env = {"CRUDDUR_HOME": str(api_home), "CONNECTION_URL": seeded_db, **cognito}
    with pytest.raises(ConfigError, match="sign-in is set up only in part"):
        create_app(Settings.from_env(env))


def test_the_dev_key_pair_does_not_serve_beyond_loopback(
    api_home, seeded_db: str, mint, api_route
) -> None:
    env = {"CRUDDUR_HOME": str(api_home), "CONNECTION_URL": seeded_db, "CRUDDUR_HOST": "0.0.0.0"}
    env.update(api_route.env(seeded_db))
    with pytest.raises(ConfigError, match="only on a loopback address"):
        create_app(Settings.from_env({**env, "CRUDDUR_AUTH": "dev"}))
    # With no Cognito setting (a container): reads work, no token signs in, not even
    # from this machine.
    with app_for(api_home, seeded_db, CRUDDUR_HOST="0.0.0.0", **api_route.env(seeded_db)) as app:
        api = CheckedClient(app)
        assert api.get("/api/activities/home").status_code == 200
        response = _refused(api, seeded_db, mint())
        assert "sign-in is not set up on this server" in response.get_json()["message"]
        assert api.get("/api/dev/users").status_code == 404  # no "sign in as" either


def test_a_dev_token_from_another_address_is_401(api, mint, seeded_db: str) -> None:
    # The reproduction: a dev-minted token got 201 from another address.
    response = _refused(api, seeded_db, mint(), environ_base={"REMOTE_ADDR": "192.0.2.66"})
    assert "only from this machine" in response.get_json()["message"]
    # Nor through a proxy on this machine, which makes every caller look local.
    _refused(api, seeded_db, mint(), headers={"X-Forwarded-For": "192.0.2.66"})
    # Nor from a page whose DNS name was rebound to 127.0.0.1 (its Host is not ours).
    _refused(api, seeded_db, mint(), headers={"Host": "attacker.example:4567"})
    assert _post(api, mint()).status_code == 201  # from 127.0.0.1 it still works


# -- Cognito, as moto's server issues it -------------------------------------------------


@pytest.fixture
def cognito(aws, moto_url: str, seeded_db: str, api_home, api_route):
    """A user pool with one confirmed user (handle 'bayko' in Cognito and in the database),
    and an app checking that pool's tokens."""
    from cruddur.aws import client

    idp = client("cognito-idp")
    pool_id, client_id = user_pool("ALLOW_ADMIN_USER_PASSWORD_AUTH")
    idp.admin_create_user(
        UserPoolId=pool_id,
        Username="bayko",
        UserAttributes=[{"Name": "preferred_username", "Value": "bayko"}],
    )
    idp.admin_set_user_password(
        UserPoolId=pool_id, Username="bayko", Password="Correct-Horse-9", Permanent=True
    )
    attributes = idp.admin_get_user(UserPoolId=pool_id, Username="bayko")["UserAttributes"]
    sub = next(a["Value"] for a in attributes if a["Name"] == "sub")
    with psycopg.connect(seeded_db) as conn:
        conn.execute("UPDATE users SET cognito_user_id = %s WHERE handle = 'bayko'", [sub])
    tokens = idp.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "bayko", "PASSWORD": "Correct-Horse-9"},
    )["AuthenticationResult"]
    with app_for(
        api_home,
        seeded_db,
        **api_route.env(seeded_db),
        AWS_COGNITO_USER_POOL_ID=pool_id,
        AWS_COGNITO_USER_POOL_CLIENT_ID=client_id,
        CRUDDUR_JWKS_URL=f"{moto_url}/{pool_id}/.well-known/jwks.json",
    ) as app:
        yield CheckedClient(app), tokens


def test_cognito_access_tokens_post_as_their_user(cognito) -> None:
    api, tokens = cognito
    response = _post(api, tokens["AccessToken"])
    assert response.status_code == 201
    assert response.get_json()["handle"] == "bayko"


def test_cognito_id_tokens_and_dev_tokens_are_refused(cognito, mint, seeded_db: str) -> None:
    api, tokens = cognito
    id_token = _refused(api, seeded_db, tokens["IdToken"])
    assert "access token" in id_token.get_json()["message"]
    _refused(api, seeded_db, mint("bayko"))  # the dev pair is not this pool's issuer


# -- what answers give away: sniffing, caches, the health check's figures ------------------

REMOTE = {"REMOTE_ADDR": "192.0.2.66"}


def test_every_answer_forbids_sniffing_and_signed_in_ones_forbid_caching(api, mint) -> None:
    read = api.get("/api/activities/home")
    assert read.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in read.headers.get("Cache-Control", "")  # public: caches may keep it
    for response in (
        _post(api, mint()),  # 201, the user's own crud
        _post(api, "not.a.token"),  # 401
        api.get("/api/activities/home", token=mint()),  # a read, signed in
        api.get("/api/no-such-thing", token=mint()),  # 404
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers.getlist("Cache-Control") == ["no-store"], response.status_code


def test_health_shows_the_pool_only_to_this_machine(api) -> None:
    local = api.get("/api/health").get_json()
    assert local["database"]["pool"]["max_size"] >= 1
    remote = api.get("/api/health", environ_base=REMOTE)
    assert remote.status_code == 200
    assert remote.get_json() == {"status": "ok", "database": {"reachable": True, "writable": True}}
    # A dev token proves nothing from another machine, and a junk one is no 401 here.
    for token in ("junk", None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        shown = api.get("/api/health", environ_base=REMOTE, headers=headers).get_json()
        assert "pool" not in shown["database"]


def test_health_shows_the_pool_to_a_signed_in_caller_elsewhere(cognito) -> None:
    api, tokens = cognito
    anonymous = api.get("/api/health", environ_base=REMOTE).get_json()
    assert "pool" not in anonymous["database"] and "latency_ms" not in anonymous["database"]
    signed_in = api.get("/api/health", environ_base=REMOTE, token=tokens["AccessToken"])
    assert signed_in.get_json()["database"]["pool"]["max_size"] >= 1


def test_a_page_on_another_origin_may_read_why_it_was_refused(api) -> None:
    # The front end on FRONTEND_URL reads Retry-After (a 503 or 429's wait) and the
    # 401's challenge; unexposed, a browser hides both from its scripts.
    refused = api.post(
        "/api/activities",
        json={"message": "hi", "ttl": "1-hour"},
        headers={"Origin": "http://localhost:3000"},
    )
    assert refused.status_code == 401
    exposed = [n.strip() for n in refused.headers["Access-Control-Expose-Headers"].split(",")]
    assert "WWW-Authenticate" in exposed and "Retry-After" in exposed


def test_dev_sign_in_asked_for_beside_cognito_settings_says_they_go_unused(
    api_home, seeded_db: str, caplog
) -> None:
    # CRUDDUR_AUTH=dev with the pool's settings set: the log said to set them for Cognito.
    env = {
        "CRUDDUR_HOME": str(api_home), "CONNECTION_URL": seeded_db, "CRUDDUR_AUTH": "dev",
        "AWS_COGNITO_USER_POOL_ID": "us-east-1_Example1", "AWS_COGNITO_USER_POOL_CLIENT_ID": "c",
    }  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="cruddur.api"):
        create_app(Settings.from_env(env))
    said = [r.getMessage() for r in caplog.records if r.name == "cruddur.api"]
    assert any(
        "CRUDDUR_AUTH=dev: AWS_COGNITO_USER_POOL_CLIENT_ID, AWS_COGNITO_USER_POOL_ID set, "
        "not used" in line
        for line in said
    ), said
    assert not any("set AWS_COGNITO_USER_POOL_ID" in line for line in said), said


def test_a_signed_token_whose_exp_is_no_time_is_a_401(app, mint) -> None:
    # float(10**400) raised OverflowError: a 500 for a token the issuer had signed.
    for exp in (10**400, "soon"):
        token = mint(claims={"exp": exp})
        answer = app.test_client().post(
            "/api/activities",
            json={"message": "hi", "ttl": "1-day"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 401, (exp, answer.get_data(as_text=True))


@pytest.mark.parametrize(
    "header",
    [
        "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip", "Via",
        "True-Client-Ip", "CF-Connecting-Ip",
        # A review: a local proxy sending only one of these got a token for anyone.
        "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Server", "X-Client-Ip",
        "X-Cluster-Client-Ip", "Fastly-Client-Ip", "X-Original-Forwarded-For",
        "X-Envoy-External-Address", "Forwarded-For", "X-Forwarded",
    ],
)  # fmt: skip
def test_a_request_a_proxy_relayed_gets_no_dev_sign_in(app, header: str) -> None:
    client = app.test_client()
    relayed = client.post("/api/dev/sign-in", json={"handle": "andrewbrown"},
                          headers={header: "203.0.113.9"})  # fmt: skip
    assert relayed.status_code == 404, header
    assert client.post("/api/dev/sign-in", json={"handle": "andrewbrown"}).status_code == 200


def test_the_dev_routes_wrong_methods_are_a_404_to_strangers_too(app) -> None:
    # Routing answered 405 with Allow before the blueprint's check ran: behind a proxy,
    # that told anyone the development sign-in was there.
    client = app.test_client()
    proxied = {"X-Forwarded-For": "1.2.3.4"}
    for method, path in (("GET", "/api/dev/sign-in"), ("POST", "/api/dev/users")):
        stranger = client.open(path, method=method, headers=proxied)
        assert stranger.status_code == 404 and "Allow" not in stranger.headers
        local = client.open(path, method=method)
        assert local.status_code == 405 and local.headers["Allow"]
    assert client.get("/api/dev/users", headers=proxied).status_code == 404
    # Word for word a missing route's 404: a shorter message told them apart.
    missing = client.get("/api/dev/nothing-here", headers=proxied).get_json()
    for method, path in (("GET", "/api/dev/users"), ("POST", "/api/dev/users")):
        hidden = client.open(path, method=method, headers=proxied).get_json()
        assert (hidden["error"], hidden["message"]) == (missing["error"], missing["message"])


def test_a_dev_private_key_opened_up_is_closed_again(tmp_path) -> None:
    # A review: after `chmod 644` the key was used as it was, readable by every local
    # user, who could then sign in as anyone wherever the dev pair is trusted.
    keys = DevKeys(tmp_path).ensure()
    assert stat.S_IMODE(keys.private_path.stat().st_mode) == 0o600
    os.chmod(keys.private_path, 0o644)
    DevKeys(tmp_path).ensure()
    assert stat.S_IMODE(keys.private_path.stat().st_mode) == 0o600
