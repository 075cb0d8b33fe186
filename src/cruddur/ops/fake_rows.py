"""Fake users and cruds in bulk, for benchmarks: the rows, drawn in Python.

The rows come from one seeded random stream, so the same seed gives the same rows
(times are relative to the moment of the run). Activities are generated oldest first;
a reply always points at an earlier top-level crud, and every parent's replies_count
is its number of replies, counted before any row is written.

Fake users are recognisable by their cognito_user_id, FAKE-<uuid>: a real Cognito
`sub` is a bare UUID and the seed's placeholders are MOCK-<handle>, so a load can
remove earlier fake rows without touching anyone else's. cruddur.ops.fake_copy encodes
the rows for COPY; cruddur.ops.fake loads them.
"""

from __future__ import annotations

import random
import time
import unicodedata
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from cruddur.limits import CRUD_MAX_CHARS, TTLS

FAKE_PREFIX = "FAKE-"
MESSAGE_LIMIT = CRUD_MAX_CHARS  # the API's limit for a crud (the schema allows more)
REPLY_SHARE = 0.2  # of all activities
RECENT_PARENTS = 2000  # replies go to one of the latest top-level cruds
DAY_MS = 86_400_000
SPAN_MS = 30 * DAY_MS  # created_at falls within the last 30 days
# The API's lifetimes, weighted so that about two thirds of the cruds are still live.
TTLS_MS = tuple(ttl // timedelta(milliseconds=1) for ttl in TTLS.values())
TTL_WEIGHTS = (60, 15, 10, 5, 4, 3, 3)  # percent, in TTLS's order (longest first)
LIKES_EXPONENT = -1 / 1.2


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Names from many places, some with accents; handles use their ASCII spelling.
FIRST_NAMES = _words(
    """Andrew Maria José Zoë Søren Chloé Björn Łukasz Ngozi Aiko Mehmet Priya Oluwaseun
    Fatima Chen Liam Olivia Mateo Sofía Ivan Anaïs Kwame Yuki Amir Noa Eitan Siobhán Rahul
    Ava Lucas Emma Dmitri Hana Thabo Ines Pedro Grace Omar Leila Finn"""
)
LAST_NAMES = _words(
    """Brown Álvarez Müller Nguyễn O'Brien Kowalski Øverland Okafor Tanaka Yılmaz Sharma
    Adeyemi Haddad Wang Smith García Rossi Petrov Dubois Mensah Sato Karimi Cohen Murphy
    Patel Silva Jansen Ivanova Kim Dlamini Costa Mollari Bayko Lindqvist"""  # noqa: RUF001
)
_NOT_DECOMPOSED = str.maketrans({"ø": "o", "ł": "l", "ı": "i", "ß": "ss"})  # noqa: RUF001


def ascii_name(name: str) -> str:
    """'Øverland' → 'overland', "O'Brien" → 'obrien': letters a handle may hold."""
    plain = unicodedata.normalize("NFKD", name.lower().translate(_NOT_DECOMPOSED))
    return "".join(c for c in plain if c.isascii() and c.isalnum())


EMAIL_DOMAINS = ("example.com", "example.org", "example.net")  # reserved: no one gets mail

# Pieces of cruds; a message is one or more of them. No tab or backslash except where
# COPY's escaping is meant to be exercised.
FRAGMENTS = (
    "Just shipped it.",
    "Coffee first. ☕",
    "Anyone else up this early?",
    "Hot take: tabs are fine.",
    "This is fine. 🔥🐶🔥",
    "Deploy on a Friday, they said. It will be fine, they said.",
    "Reading the PostgreSQL docs again, and again they were right.",
    "The keyset page came back in under a millisecond and I felt something.",
    "Ah, arrogance and stupidity all in the same package. How efficient of you.",
    "Café au lait, croissant, and a failing test. Bonne journée !",
    "Tschüß, bis morgen! Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "今日はいい天気ですね。",
    "新年快乐！🎉",  # noqa: RUF001
    "مرحبا بالعالم",
    "שלום עולם, this sentence mixes directions.",
    "Привет, мир!",
    "👩‍💻👨‍👩‍👧‍👦🏳️‍🌈",
    "Who moved my cheese? 🧀",
    "TIL: EXPLAIN (ANALYZE, BUFFERS) tells you where the time went.",
    "Weekend plans: nothing. Absolutely nothing. Bliss.",
    "Our cat has learned to open the fridge. We are no longer in charge.",
    "Three meetings that could have been emails, one email that should have been a meeting.",
    "Wrote a regex to fix a problem; now I have a C:\\temp\\problems folder.",
    "Line one\nline two: cruds can have newlines too.",
    "Counting down to the long weekend… 3… 2… 1…",
    "If it hurts, do it more often. Releases included.",
    "The best code is the code you never had to write.",
    "Sunrise over the harbour this morning was unreal 🌅",
    "Reminder: drink water. 💧",
    "Half marathon done! Legs: gone. Spirit: unbroken. 🏃",
    "Finally read the whole RFC. It was 40 pages of MUST and SHOULD.",
    "Does anyone actually like daylight saving time?",
    "Pizza is a vegetable if you believe hard enough. 🍕",
    "Unpopular opinion: README files are the best part of a project.",
    "Rain again. The plants are happy at least. 🌧️🌱",
    "Trying to explain what I do for a living to my grandmother, part 7.",
    "Rebooted it and it works. I have learned nothing.",
    "Cruddur > all other micro-blogs, obviously.",
    "Learning to play the cello at 40. The neighbours are very patient.",
    "'; DROP TABLE activities; -- just kidding, bound parameters 😇",
)
HASHTAGS = ("#postgres", "#python", "#100DaysOfCode", "#aws", "#coffee", "#cruddur", "#TIL")
# A message's target length: mostly short, some medium, a few near the limit.
LENGTH_TARGETS = ((60, 55), (140, 30), (220, 10), (MESSAGE_LIMIT, 5))


@dataclass(frozen=True)
class FakeUser:
    uuid: bytes
    display_name: str
    handle: str
    email: str
    cognito_user_id: str
    created_ms: int


# An activity row, in fake_copy.ACTIVITY_COLUMNS' order: uuid, user_uuid (16 raw bytes
# each), message, replies_count, reposts_count, likes_count, reply_to_activity_uuid
# (bytes or None), expires_at, created_at (ms since 1970, UTC). A plain tuple: a load
# makes millions, and objects with named fields are slower to make.
FakeActivity = tuple[bytes, bytes, str, int, int, int, bytes | None, int, int]


# The most a load makes. FakeData holds every user's handle and name (about 220 bytes
# each) and every activity's id, parent, reply count and times (about 47 bytes each)
# before it writes a row, since a parent's replies_count is known only once all its
# replies are planned: 1,000,000 users and 10,000,000 activities peak near 600 MB of
# client memory (measured). `--activities 2147483647` grew past 3.4 GB in 12 s and went on.
MAX_USERS = 1_000_000
MAX_ACTIVITIES = 10_000_000


def check_sizes(users: int, activities: int) -> None:
    """Refuse sizes that cannot make sense (the CLI checks its flags before this)."""
    if users < 0 or activities < 0:
        raise ValueError("the numbers of users and activities must be 0 or more")
    if users > MAX_USERS or activities > MAX_ACTIVITIES:
        raise ValueError(
            f"at most {MAX_USERS:,} users and {MAX_ACTIVITIES:,} activities in one load"
        )
    if activities > 0 and users == 0:
        raise ValueError("fake activities need fake users to post them")


# Bytes per draw: randbytes(n) asks getrandbits() for n * 8 bits, at most a C int's worth
# (2**31 - 1), so one draw made at most 16.7 million UUIDs ("Python int too large").
RANDOM_CHUNK = 1 << 24  # a whole number of 32-bit words


def random_bytes(rng: random.Random, n: int) -> bytes:
    """`rng.randbytes(n)`, drawn in pieces of whole 32-bit words: the same bytes (so the
    same seed makes the same rows), for any n."""
    return b"".join(rng.randbytes(min(RANDOM_CHUNK, n - at)) for at in range(0, n, RANDOM_CHUNK))


def _v4(raw: bytes) -> bytes:
    """Many random 16-byte UUIDs at once, with the version-4 and variant bits set."""
    ids = bytearray(raw)
    ids[6::16] = ids[6::16].translate(_VERSION_BITS)
    ids[8::16] = ids[8::16].translate(_VARIANT_BITS)
    return bytes(ids)


_VERSION_BITS = bytes((byte & 0x0F) | 0x40 for byte in range(256))
_VARIANT_BITS = bytes((byte & 0x3F) | 0x80 for byte in range(256))


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class FakeData:
    """The fake rows for one run, drawn from one seeded stream."""

    users: int
    activities: int
    seed: int
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def __post_init__(self) -> None:
        check_sizes(self.users, self.activities)
        self._rng = random.Random(self.seed)
        self.user_ids = _v4(random_bytes(self._rng, 16 * self.users))
        self.activity_ids = _v4(random_bytes(self._rng, 16 * self.activities))
        self.names: list[tuple[int, int]] = []  # (first, last) name of each user
        self.handles = self._handles()
        self._plan_replies()
        self._taken_rng = random.Random(f"{self.seed}:taken")  # one over every renaming

    # -- users -------------------------------------------------------------------

    def _handles(self) -> list[str]:
        rng, seen, handles = self._rng, set(), []
        shapes = ("{f}{l}", "{f}.{l}", "{f}_{l}", "{i}{l}", "{f}")
        for _ in range(self.users):
            name = (int(rng.random() * len(FIRST_NAMES)), int(rng.random() * len(LAST_NAMES)))
            self.names.append(name)
            first, last = _ASCII_FIRST[name[0]], _ASCII_LAST[name[1]]
            handle = rng.choice(shapes).format(f=first, l=last, i=first[0])
            if handle in seen or rng.random() < 0.5:
                handle += str(rng.randrange(100))
            while handle in seen:  # few names, many users: numbers keep them apart
                handle += str(rng.randrange(10))
            seen.add(handle)
            handles.append(handle)
        return handles

    def rename_taken(self, taken: set[str]) -> list[str]:
        """Give the handles that other users already have a number, free among these
        handles; returns the new ones, which the caller must check against the database
        again (a number added may make a handle someone else has: anais → anais1)."""
        rng, seen, renamed = self._taken_rng, set(self.handles), []
        for i, handle in enumerate(self.handles):
            if handle in taken:
                while handle in seen or handle in taken:
                    handle += str(rng.randrange(10))
                seen.add(handle)
                self.handles[i] = handle
                renamed.append(handle)
        return renamed

    def user_rows(self) -> Iterator[FakeUser]:
        rng = random.Random(f"{self.seed}:users")
        for i, handle in enumerate(self.handles):
            first, last = self.names[i]
            uuid = self.user_ids[16 * i : 16 * i + 16]
            yield FakeUser(
                uuid=uuid,
                display_name=f"{FIRST_NAMES[first]} {LAST_NAMES[last]}",
                handle=handle,
                email=f"{handle}@{EMAIL_DOMAINS[i % len(EMAIL_DOMAINS)]}",
                cognito_user_id=FAKE_PREFIX + _uuid_text(uuid),
                # joined before the 30 days of cruds
                created_ms=self.now_ms - SPAN_MS - int(rng.random() * 365 * DAY_MS),
            )

    # -- activities --------------------------------------------------------------

    def _plan_replies(self) -> None:
        """Which activities are replies, to which earlier crud, and each one's count."""
        rng = self._rng
        self.parents = array("i", [-1]) * self.activities
        self.replies = array("i", [0]) * self.activities
        tops = array("i")
        for i in range(self.activities):
            if tops and rng.random() < REPLY_SHARE:
                recent = min(len(tops), RECENT_PARENTS)
                parent = tops[len(tops) - 1 - int(rng.random() * recent)]
                self.parents[i] = parent
                self.replies[parent] += 1
            else:
                tops.append(i)

    def _message(self, rand: Callable[[], float]) -> str:
        target = _LENGTH_TABLE[int(rand() * 100)]
        message = FRAGMENTS[int(rand() * len(FRAGMENTS))]
        while True:
            r = rand()
            if r < 0.08:
                piece = HASHTAGS[int(r * 1000) % len(HASHTAGS)]
            elif r < 0.15:
                piece = "@" + self.handles[int(rand() * self.users)]
            else:
                piece = FRAGMENTS[int(rand() * len(FRAGMENTS))]
            if len(message) + 1 + len(piece) > target:
                return message
            message = f"{message} {piece}"

    def activity_rows(self, start: int, stop: int) -> list[FakeActivity]:
        """Rows start..stop-1, in the order of their slots in time (a reply may be moved
        earlier, into its parent's life). Call with consecutive ranges, from 0."""
        rand, ids, user_ids = self._rng.random, self.activity_ids, self.user_ids
        users, count = self.users, self.activities
        parents, replies, message = self.parents, self.replies, self._message
        if start == 0:  # each row's times, for its replies later on
            self._created = array("q", [0]) * count
            self._expires = array("q", [0]) * count
        born, ends = self._created, self._expires
        first_ms = self.now_ms - SPAN_MS
        step = SPAN_MS // max(count, 1)  # each crud gets its own slot in time: no ties
        rows = []
        for i in range(start, stop):
            created = first_ms + (i * SPAN_MS) // count + int(rand() * step)
            expires = created + _TTL_TABLE[int(rand() * 100)]
            u = int(users * rand() ** 2)  # a few users post most of the cruds
            likes = int((1.0 - rand()) ** LIKES_EXPONENT) - 1  # Pareto: most 0, a few many
            parent = parents[i]
            if parent >= 0:
                # A reply the API could have taken (activities/reply.sql): made while its
                # parent was live, and expiring with it.
                if created >= ends[parent]:
                    created = born[parent] + 1 + int(rand() * (ends[parent] - born[parent] - 1))
                expires = ends[parent]
            born[i], ends[i] = created, expires
            rows.append(
                (
                    ids[16 * i : 16 * i + 16],
                    user_ids[16 * u : 16 * u + 16],
                    message(rand),
                    replies[i],
                    int(likes * rand() * 0.3) if likes else 0,
                    min(likes, 1_000_000),
                    ids[16 * parent : 16 * parent + 16] if parent >= 0 else None,
                    expires,
                    created,
                )
            )
        return rows


_ASCII_FIRST = tuple(ascii_name(name) for name in FIRST_NAMES)
_ASCII_LAST = tuple(ascii_name(name) for name in LAST_NAMES)
# Weighted choices as tables of 100 entries: one random() and one index per pick.
_TTL_TABLE = tuple(
    ttl for ttl, weight in zip(TTLS_MS, TTL_WEIGHTS, strict=True) for _ in range(weight)
)
_LENGTH_TABLE = tuple(length for length, weight in LENGTH_TARGETS for _ in range(weight))
assert len(_TTL_TABLE) == len(_LENGTH_TABLE) == 100
