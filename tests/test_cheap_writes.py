"""Cheaper writes: verified tokens kept (never past their life), authors kept per process,
one statement per write."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cruddur.api import auth, create_app
from cruddur.api.auth import InvalidToken, TokenVerifier
from cruddur.api.db import primary_db
from cruddur.api.token_cache import VerifiedTokens
from cruddur.config import Settings
from cruddur.db import Db
from cruddur.dev_keys import DevKeys


class CountingVerifier(TokenVerifier):
    """Counts the full checks (the RSA work) behind the cache."""

    full_checks = 0

    def _check(self, token: str):
        self.full_checks += 1
        return super()._check(token)


def _verifier(home: Path, **kwargs) -> tuple[CountingVerifier, Callable[..., str]]:
    """A verifier of the dev key pair's tokens (kwargs: its own), and a mint of them:
    mint(subject="MOCK-andrewbrown", **options)."""
    settings = Settings.from_env({"CRUDDUR_HOME": str(home)})
    keys = DevKeys(home).ensure()

    def mint(subject: str = "MOCK-andrewbrown", **options) -> str:
        return keys.mint(settings.auth, subject, **options)

    return CountingVerifier(settings.auth, **kwargs), mint


def _verified_once(home: Path, **kwargs) -> tuple[CountingVerifier, Callable[..., str], str]:
    """_verifier's verifier and mint, and andrewbrown's token, verified once."""
    verifier, mint = _verifier(home, **kwargs)
    token = mint()
    verifier.verify(token)
    return verifier, mint, token


def test_a_token_is_checked_the_full_way_once(tmp_path: Path) -> None:
    verifier, mint = _verifier(tmp_path)
    token = mint()
    for _ in range(5):
        assert verifier.verify(token)["sub"] == "MOCK-andrewbrown"
    assert verifier.full_checks == 1
    other = mint("MOCK-bayko")
    assert verifier.verify(other)["sub"] == "MOCK-bayko"
    assert verifier.full_checks == 2


def test_a_cached_token_is_refused_once_it_expires(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(auth, "LEEWAY_SECONDS", 0)  # so the test waits 3 s, not 33
    verifier, mint = _verifier(tmp_path)
    token = mint(expires_in=3)
    verifier.verify(token)
    verifier.verify(token)
    assert verifier.full_checks == 1  # served from the cache
    time.sleep(max(0.0, _exp(token) - time.time()) + 0.05)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    assert len(verifier.verified) == 0


def test_the_cache_never_extends_a_token_past_its_exp(tmp_path: Path) -> None:
    # Past exp but inside the clock-skew leeway: the full check accepts it each time, and
    # it is never cached, so the leeway alone decides, exactly as without the cache.
    verifier, mint = _verifier(tmp_path)
    token = mint(expires_in=-5)
    for _ in range(3):
        verifier.verify(token)
    assert verifier.full_checks == 3
    assert len(verifier.verified) == 0
    # An entry's life ends at exp, whatever the clock says later.
    clock = [time.time()]
    cache = VerifiedTokens(clock=lambda: clock[0])
    verifier, mint = _verifier(tmp_path, verified=cache)
    token = mint(expires_in=60)
    verifier.verify(token)
    clock[0] = _exp(token)
    verifier.verify(token)
    assert verifier.full_checks == 2


def test_a_cached_token_of_a_revoked_key_is_refused(tmp_path: Path) -> None:
    verifier, mint, token = _verified_once(tmp_path)
    # The issuer drops that key (a rotation or a revocation) and the service refetches.
    keys = DevKeys(tmp_path)
    keys.jwks_path.unlink()
    keys.private_path.unlink()
    keys.ensure()
    verifier.keys.min_refresh = 0
    verifier.verify(mint("MOCK-bayko"))  # a new kid: refetch
    with pytest.raises(InvalidToken, match="key the issuer does not publish"):
        verifier.verify(token)
    assert verifier.full_checks == 3


def test_malformed_and_tampered_tokens_are_never_cached(tmp_path: Path) -> None:
    verifier, _, token = _verified_once(tmp_path)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    for bad in ["not.a.jwt", "", tampered, token + "x"]:
        for _ in range(2):
            with pytest.raises(InvalidToken):
                verifier.verify(bad)
    assert len(verifier.verified) == 1


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    verifier, mint = _verifier(tmp_path, verified=VerifiedTokens(max_entries=3))
    tokens = [mint(f"MOCK-{n}") for n in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert len(verifier.verified) == 3
    verifier.verify(tokens[0])  # evicted: checked again
    assert verifier.full_checks == 6


def _exp(token: str) -> float:
    import jwt

    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


# -- one statement per write ---------------------------------------------------------


class CountingDb(Db):
    """The app's real pool, counting the statements it sends."""

    statements = 0

    def _execute(self, conn, sql, params, *rest):  # type: ignore[override]
        type(self).statements += 1
        return Db._execute(conn, sql, params, *rest)


@pytest.fixture
def counted(api_settings: Settings):
    from api_support import CheckedClient

    base = primary_db(api_settings)
    database = CountingDb(base.conninfo, base.settings, autocommit=True, check=False)
    CountingDb.statements = 0
    app = create_app(api_settings, database=database)
    yield CheckedClient(app)
    database.close()


def _reply_parent(url: str) -> str:
    with psycopg.connect(url) as conn:
        return str(
            conn.execute("SELECT uuid FROM activities WHERE replies_count = 2").fetchone()[0]
        )


def test_a_write_is_one_statement_after_the_first(counted, mint, seeded_db: str) -> None:
    token = mint("bayko")
    crud = {"message": "counted", "ttl": "1-day"}
    assert counted.post("/api/activities", json=crud, token=token).status_code == 201
    first = CountingDb.statements
    assert first == 2  # the author's lookup, then the insert
    parent = _reply_parent(seeded_db)
    for _ in range(5):
        assert counted.post("/api/activities", json=crud, token=token).status_code == 201
        reply = counted.post(
            f"/api/activities/{parent}/reply", json={"message": "again"}, token=token
        )
        assert reply.status_code == 201
    assert CountingDb.statements - first == 10


def test_a_deleted_author_is_looked_up_again(counted, mint, seeded_db: str) -> None:
    token = mint(sub="sub-of-carol")
    crud = {"message": "hi", "ttl": "1-day"}
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        add = (
            "INSERT INTO users (display_name, handle, email, cognito_user_id)"
            " VALUES ('Carol', %s, 'carol@example.com', 'sub-of-carol') RETURNING uuid"
        )
        first_uuid = conn.execute(add, ["carol"]).fetchone()[0]
        assert counted.post("/api/activities", json=crud, token=token).status_code == 201
        # The row goes (and its cruds with it); the process still maps the sub to it.
        conn.execute("DELETE FROM users WHERE uuid = %s", [first_uuid])
        response = counted.post("/api/activities", json=crud, token=token)
        assert response.status_code == 403
        assert response.get_json()["error"] == "no_user"
        assert conn.execute("SELECT count(*) FROM activities WHERE user_uuid = %s",
                            [first_uuid]).fetchone()[0] == 0  # fmt: skip
        # Made again (sync-cognito), with a new uuid: the next write is theirs.
        second_uuid = conn.execute(add, ["carol2"]).fetchone()[0]
        response = counted.post("/api/activities", json=crud, token=token)
        assert response.status_code == 201
        assert response.get_json()["handle"] == "carol2"
        stored = conn.execute(
            "SELECT user_uuid FROM activities WHERE uuid = %s", [response.get_json()["uuid"]]
        ).fetchone()[0]
        assert stored == second_uuid


# -- a kept author whose row has another sub since ----------------------------------------

WRITES = ["create", "create keyed", "reply", "reply keyed", "reply to no crud"]


def _write(kind: str, parent: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The path, body and headers of one write of `kind` (a new Idempotency-Key each)."""
    headers = {"Idempotency-Key": str(uuid.uuid4())} if kind.endswith("keyed") else {}
    if kind == "reply to no crud":
        return f"/api/activities/{uuid.uuid4()}/reply", {"message": "moved"}, headers
    if kind.startswith("reply"):
        return f"/api/activities/{parent}/reply", {"message": "moved"}, headers
    return "/api/activities", {"message": "moved", "ttl": "1-day"}, headers


def _stored(conn: psycopg.Connection) -> tuple:
    """What a write could change: cruds, reply counts, kept keys."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM activities), (SELECT sum(replies_count) FROM activities),"
        " (SELECT count(*) FROM idempotency_keys)"
    ).fetchone()


@pytest.mark.parametrize("kind", WRITES)
def test_a_token_whose_sub_has_left_its_user_writes_nothing(
    counted, mint, seeded_db: str, kind: str
) -> None:
    # `users sync-cognito` puts londo's real sub into the row the worker keeps for
    # MOCK-londo: the old token speaks for no one, as it does to a worker that never
    # kept it, on every write (the plain create is NewCrud's, without Flask).
    authors = counted.client.application.extensions["cruddur.authors"]
    old, parent = mint("londo"), _reply_parent(seeded_db)
    warm = "create" if kind == "reply to no crud" else kind
    path, body, headers = _write(warm, parent)
    assert counted.post(path, json=body, headers=headers, token=old).status_code == 201
    assert authors.known("MOCK-londo") is not None
    with psycopg.connect(seeded_db, autocommit=True) as conn:
        conn.execute("UPDATE users SET cognito_user_id = 'real-sub-londo' WHERE handle = 'londo'")
        before = _stored(conn)
        statements = CountingDb.statements
        path, body, headers = _write(kind, parent)
        response = counted.post(path, json=body, headers=headers, token=old)
        assert response.status_code == 403
        assert response.get_json()["error"] == "no_user"
        assert CountingDb.statements - statements == 2  # the write, then the lookup
        assert _stored(conn) == before
        assert authors.known("MOCK-londo") is None
        # The real sub's token is londo's.
        path, body, headers = _write(kind, parent)
        response = counted.post(path, json=body, headers=headers, token=mint(sub="real-sub-londo"))
        if kind == "reply to no crud":
            assert response.status_code == 404
        else:
            assert response.status_code == 201
            assert response.get_json()["handle"] == "londo"
