"""Cruddur's production PostgreSQL on AWS RDS: create, describe, stop, start, delete, wait.

The defaults are the original's `aws rds create-db-instance` script (db.t3.micro, 20 GB
gp2, encrypted, public, single-AZ, no backups, Performance Insights for 7 days), with a
current PostgreSQL major version instead of 14.6. PRODUCTION is the safe set instead:
private, 7 days of backups, deletion protection, Multi-AZ. Functions take a boto3 RDS client
(`cruddur.aws.client("rds")`) so the CLI and the tests choose where it points.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cruddur.aws.problems import AwsProblem

# botocore is imported where its errors are caught: `cruddur rds --help` shows this
# module's defaults and needs none of it.
if TYPE_CHECKING:
    from botocore.exceptions import ClientError

DEFAULT_IDENTIFIER = "cruddur-db-instance"
ENGINE = "postgres"
# A major version alone: RDS picks that major's newest minor, so the default does not go
# stale the way a pinned minor (the original's 14.6) did.
DEFAULT_ENGINE_VERSION = "17"

# States an instance passes through on its own; anything else while waiting for
# "available" will not get there without help.
FAILED_STATES = frozenset(
    {
        "failed",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-parameters",
        "incompatible-restore",
        "restore-error",
        "storage-full",
    }
)

# PostgreSQL's reserved key words (which RDS refuses as a master user name), and the
# role RDS keeps for itself.
_RESERVED_NAMES = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization binary both case
    cast check collate collation column concurrently constraint create cross
    current_catalog current_date current_role current_schema current_time
    current_timestamp current_user default deferrable desc distinct do else end except
    false fetch for foreign freeze from full grant group having ilike in initially inner
    intersect into is isnull join lateral leading left like limit localtime localtimestamp
    natural not notnull null offset on only or order outer overlaps placing primary
    references returning right select session_user similar some symmetric system_user
    table tablesample then to trailing true union unique user using variadic verbose when
    where window with rdsadmin""".split()  # noqa: SIM905 (a word list reads better as words)
)
# `rds create --production`: what a database holding real users' data should have.
STORAGE_TYPES = ("gp2", "gp3", "io1", "io2")
PROVISIONED_IOPS_TYPES = ("io1", "io2")  # RDS asks for their IOPS
PRODUCTION = {
    "public": False,
    "backup_retention_days": 7,
    "deletion_protection": True,
    "multi_az": True,
}

_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")
_PASSWORD_FORBIDDEN = '/"@ '


@dataclass(frozen=True)
class MasterCredentials:
    username: str
    password: str = field(repr=False)  # never in a repr, a log line or a traceback


def credentials_from_env(env: Mapping[str, str], *, for_proxy: bool = False) -> MasterCredentials:
    """MASTER_USERNAME and MASTER_USER_PASSWORD, checked against RDS's rules for PostgreSQL
    (so a bad one fails here, in a second, not in RDS's reply). Messages never show the
    password. for_proxy: the existing instance's master user, for a proxy's secret."""
    username = env.get("MASTER_USERNAME", "")
    password = env.get("MASTER_USER_PASSWORD", "")
    given = {"MASTER_USERNAME": username, "MASTER_USER_PASSWORD": password}
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise AwsProblem(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set",
            (
                "export the instance's master user as MASTER_USERNAME and "
                "MASTER_USER_PASSWORD (the proxy logs in as it), or give --secret-arn of a "
                "Secrets Manager secret that holds them"
            )
            if for_proxy
            else (
                "export MASTER_USERNAME=cruddurroot and MASTER_USER_PASSWORD=… (8-128 "
                "characters) first; they become the instance's master user"
            ),
        )
    problem = username_problem(username)
    if problem:
        raise AwsProblem(f"MASTER_USERNAME {problem}", "e.g. MASTER_USERNAME=cruddurroot")
    problem = password_problem(password)
    if problem:
        raise AwsProblem(
            f"MASTER_USER_PASSWORD {problem}",
            'RDS wants 8-128 printable ASCII characters, none of / " @ or a space',
        )
    return MasterCredentials(username, password)


def username_problem(username: str) -> str | None:
    if not _USERNAME.fullmatch(username):
        return (
            "must be 1-16 letters, digits or underscores, starting with a letter "
            f"(got {len(username)} characters)"
        )
    if username.lower() in _RESERVED_NAMES:
        return f'"{username}" is a word PostgreSQL or RDS reserves; pick another name'
    return None


def password_problem(password: str) -> str | None:
    """What RDS would refuse in this password, described without repeating it."""
    if not 8 <= len(password) <= 128:
        return f"must be 8-128 characters long (it has {len(password)})"
    bad = sorted({ch for ch in password if ch in _PASSWORD_FORBIDDEN}, key=_PASSWORD_FORBIDDEN.find)
    if bad:
        shown = ", ".join("a space" if ch == " " else ch for ch in bad)
        return f"contains characters RDS refuses: {shown}"
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in password):
        return "contains characters outside printable ASCII"
    return None


@dataclass(frozen=True)
class InstanceSpec:
    """The instance `cruddur rds create` asks for; each field is a CLI flag."""

    identifier: str = DEFAULT_IDENTIFIER
    instance_class: str = "db.t3.micro"
    engine_version: str = DEFAULT_ENGINE_VERSION
    storage_gb: int = 20
    storage_type: str = "gp2"
    iops: int | None = None  # provisioned IOPS: io1 and io2 need them, gp3 may have them
    port: int = 5432
    db_name: str = "cruddur"
    public: bool = True
    multi_az: bool = False
    backup_retention_days: int = 0
    performance_insights: bool = True
    performance_insights_days: int = 7
    deletion_protection: bool = False
    encrypted: bool = True

    def choices(self) -> list[str]:
        """What the safety-related choices mean, one line each (said when it is created)."""
        said = []
        if self.public:
            said.append(
                "public: it has an address on the internet, and only its security group "
                "decides who may try to connect (--private keeps it inside the VPC)"
            )
        else:
            said.append("private: only resources inside its VPC can reach it")
        if self.backup_retention_days:
            said.append(
                f"backups: {self.backup_retention_days} days of automated backups, to restore "
                "it to any point in that time"
            )
        else:
            said.append(
                "no backups: a broken or deleted instance cannot be restored "
                "(--backup-retention 7 keeps a week)"
            )
        if self.deletion_protection:
            said.append("deletion protection: it cannot be deleted until that is turned off")
        else:
            said.append(
                "no deletion protection: one delete call removes it (--deletion-protection)"
            )
        if self.multi_az:
            said.append(
                "Multi-AZ: a standby in another zone takes over within minutes if the "
                "primary fails (about twice the cost)"
            )
        else:
            said.append(
                "single-AZ: if its host or zone fails, it is down until AWS replaces it "
                "(--multi-az)"
            )
        if not self.encrypted:
            said.append("unencrypted: its storage and snapshots are not encrypted at rest")
        return said

    def storage_problem(self) -> str | None:
        """What is wrong with the storage asked for, before RDS is asked (RDS refused an
        io1 instance without IOPS only after the command had said it was creating it);
        None when RDS may judge the rest (IOPS to size ratios, which change by type)."""
        if self.storage_type in PROVISIONED_IOPS_TYPES and self.iops is None:
            return f"{self.storage_type} storage is provisioned IOPS: give --iops (1000 or more)"
        if self.storage_type in PROVISIONED_IOPS_TYPES and self.storage_gb < 100:
            return f"{self.storage_type} storage starts at 100 GB: give --storage 100 or more"
        if self.iops is not None and self.storage_type not in (*PROVISIONED_IOPS_TYPES, "gp3"):
            return (
                f"{self.storage_type} storage takes no --iops (its IOPS follow its size): "
                "drop --iops, or choose --storage-type gp3, io1 or io2"
            )
        return None

    def create_params(self, credentials: MasterCredentials) -> dict[str, Any]:
        """The keyword arguments for boto3's create_db_instance."""
        params: dict[str, Any] = {
            "DBInstanceIdentifier": self.identifier,
            "DBInstanceClass": self.instance_class,
            "Engine": ENGINE,
            "EngineVersion": self.engine_version,
            "MasterUsername": credentials.username,
            "MasterUserPassword": credentials.password,
            "AllocatedStorage": self.storage_gb,
            "StorageType": self.storage_type,
            "Port": self.port,
            "DBName": self.db_name,
            "PubliclyAccessible": self.public,
            "MultiAZ": self.multi_az,
            "BackupRetentionPeriod": self.backup_retention_days,
            "EnablePerformanceInsights": self.performance_insights,
            "DeletionProtection": self.deletion_protection,
            "StorageEncrypted": self.encrypted,
        }
        if self.performance_insights:
            params["PerformanceInsightsRetentionPeriod"] = self.performance_insights_days
        if self.iops is not None:
            params["Iops"] = self.iops
        return params


@dataclass(frozen=True)
class Instance:
    """What describe_db_instances says about one instance, in the fields people ask for."""

    identifier: str
    state: str
    instance_class: str
    engine: str
    engine_version: str
    endpoint: str | None  # None until RDS has given it a DNS name
    port: int | None
    public: bool
    security_groups: tuple[tuple[str, str], ...]  # (group id, membership status)
    master_username: str
    db_name: str | None
    storage_gb: int | None
    encrypted: bool
    deletion_protection: bool
    backup_retention_days: int = 0
    replica_source: str | None = None  # the primary's identifier, for a read replica
    read_replicas: tuple[str, ...] = ()  # this instance's replicas
    subnet_ids: tuple[str, ...] = ()  # its DB subnet group's subnets

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Instance:
        endpoint = data.get("Endpoint") or {}
        return cls(
            identifier=data["DBInstanceIdentifier"],
            state=data.get("DBInstanceStatus", "unknown"),
            instance_class=data.get("DBInstanceClass", ""),
            engine=data.get("Engine", ""),
            engine_version=data.get("EngineVersion", ""),
            endpoint=endpoint.get("Address"),
            port=endpoint.get("Port") or data.get("DbInstancePort") or None,
            public=bool(data.get("PubliclyAccessible")),
            security_groups=tuple(
                (group["VpcSecurityGroupId"], group.get("Status", ""))
                for group in data.get("VpcSecurityGroups", [])
            ),
            master_username=data.get("MasterUsername", ""),
            db_name=data.get("DBName"),
            storage_gb=data.get("AllocatedStorage"),
            encrypted=bool(data.get("StorageEncrypted")),
            deletion_protection=bool(data.get("DeletionProtection")),
            backup_retention_days=int(data.get("BackupRetentionPeriod") or 0),
            replica_source=data.get("ReadReplicaSourceDBInstanceIdentifier"),
            read_replicas=tuple(data.get("ReadReplicaDBInstanceIdentifiers", [])),
            subnet_ids=tuple(
                subnet["SubnetIdentifier"]
                for subnet in (data.get("DBSubnetGroup") or {}).get("Subnets", [])
            ),
        )

    def connection_url(self) -> str | None:
        """PROD_CONNECTION_URL for this instance, with the password shown as ***, and
        sslmode=verify-full: the server must prove it is this instance (cruddur.rds_tls)."""
        if not self.endpoint:
            return None
        user = quote(self.master_username, safe="")
        dbname = quote(self.db_name or "postgres", safe="")
        where = f"{self.endpoint}:{self.port or 5432}/{dbname}"
        return f"postgresql://{user}:***@{where}?sslmode=verify-full"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def not_found(identifier: str) -> AwsProblem:
    return AwsProblem(
        f'no RDS instance "{identifier}" in this account and region',
        "check the instance's identifier and the region (AWS_REGION, --region); "
        "`cruddur rds create` makes one",
    )


def describe(rds: Any, identifier: str) -> Instance | None:
    """The instance, or None when there is none by that name."""
    from botocore.exceptions import ClientError

    try:
        found = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except ClientError as exc:
        if _code(exc) == "DBInstanceNotFound":
            return None
        raise
    return Instance.from_api(found[0]) if found else None


def require(rds: Any, identifier: str) -> Instance:
    instance = describe(rds, identifier)
    if instance is None:
        raise not_found(identifier)
    return instance


def create(rds: Any, spec: InstanceSpec, credentials: MasterCredentials) -> tuple[Instance, bool]:
    """Ask RDS for the instance. (instance, False) when one by that name already exists."""
    existing = describe(rds, spec.identifier)
    if existing is not None:
        return existing, False
    reply = rds.create_db_instance(**spec.create_params(credentials))
    return Instance.from_api(reply["DBInstance"]), True


def stop(rds: Any, identifier: str) -> tuple[Instance, bool]:
    """Stop the instance. (instance, False) when it is already stopped or stopping."""
    return _change_state(rds, identifier, "stop", ("stopped", "stopping"), "available")


def start(rds: Any, identifier: str) -> tuple[Instance, bool]:
    """Start the instance. (instance, False) when it is already available or starting."""
    return _change_state(rds, identifier, "start", ("available", "starting"), "stopped")


def _change_state(
    rds: Any, identifier: str, verb: str, there: tuple[str, ...], only_from: str
) -> tuple[Instance, bool]:
    instance = require(rds, identifier)
    if instance.state in there:
        return instance, False
    if instance.state != only_from:
        raise AwsProblem(
            f'"{identifier}" is {instance.state}; RDS can {verb} it only when it is {only_from}',
            "wait for it: `cruddur rds status`",
        )
    reply = getattr(rds, f"{verb}_db_instance")(DBInstanceIdentifier=identifier)
    return Instance.from_api(reply["DBInstance"]), True


_SNAPSHOT_NAME = re.compile(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)")


# RDS's rule for a DB instance identifier (it keeps them in lower case).
_IDENTIFIER = re.compile(r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)")


def identifier_problem(name: str) -> str | None:
    """Why RDS would refuse `name` as an instance identifier, or None. Checked before
    asking: an empty one reads as no filter at all to DescribeDBInstances."""
    if _IDENTIFIER.fullmatch(name):
        return None
    return (
        f"{name!r} is not an RDS instance identifier: 1-63 letters, digits and hyphens, "
        "starting with a letter, no -- and no hyphen at the end"
    )


def snapshot_name_problem(name: str) -> str | None:
    if _SNAPSHOT_NAME.fullmatch(name):
        return None
    return (
        f"snapshot name {name!r} is not one RDS takes: 1-255 letters, digits and hyphens, "
        "starting with a letter, no -- and no hyphen at the end"
    )


def delete(rds: Any, identifier: str, *, final_snapshot: str | None) -> Instance:
    """Delete the instance, taking a final snapshot named `final_snapshot` unless None."""
    from botocore.exceptions import ClientError

    params: dict[str, Any] = {"DBInstanceIdentifier": identifier}
    if final_snapshot:
        params["FinalDBSnapshotIdentifier"] = final_snapshot
    else:
        params["SkipFinalSnapshot"] = True
    try:
        reply = rds.delete_db_instance(**params)
    except ClientError as exc:
        if _code(exc) == "DBInstanceNotFound":
            raise not_found(identifier) from exc
        raise
    return Instance.from_api(reply["DBInstance"])


LOOKS_FAILING_MAX = 5 * 60.0  # seconds of failed looks in a row before a wait gives up


def wait_for(
    rds: Any,
    identifier: str,
    state: str | None,
    *,
    interval: float = 15.0,
    timeout: float = 45 * 60,
    on_poll: Callable[[str | None, float], None] | None = None,
    on_retry: Callable[[str, float], None] | None = None,
) -> Instance | None:
    """Poll until the instance is in `state` (None: until it is gone), calling
    on_poll(current state, seconds waited) after each look. Creating takes 10-15 minutes.

    A look that fails for a while (throttled, a 5xx, the network: the change itself has
    been asked for and RDS carries on) is tried again at the next interval, and
    on_retry(why, seconds waited) is called; after LOOKS_FAILING_MAX seconds of failed
    looks in a row, or at the timeout, the wait ends saying so."""
    started = time.monotonic()
    failing_since: float | None = None
    while True:
        try:
            instance = describe(rds, identifier)
        except Exception as exc:
            from cruddur.aws.errors import explain_aws, transient  # botocore: imported on use

            now = time.monotonic()
            failing_since = failing_since or now
            if not transient(exc):
                raise
            why = explain_aws(exc)
            reason = why.message if why is not None else str(exc)
            if now - failing_since >= LOOKS_FAILING_MAX or now - started >= timeout:
                raise AwsProblem(
                    f'could not look at "{identifier}" for {now - failing_since:.0f} s: {reason}',
                    "RDS carries on with the change; look again later with `cruddur rds status`",
                ) from exc
            if on_retry is not None:
                on_retry(reason, now - started)
            time.sleep(interval)
            continue
        failing_since = None
        current = instance.state if instance else None
        waited = time.monotonic() - started
        if on_poll is not None:
            on_poll(current, waited)
        if current == state:
            return instance
        if instance is None:
            raise not_found(identifier)
        if state == "available" and current in FAILED_STATES:
            raise AwsProblem(
                f'"{identifier}" is {current}; it will not become available on its own',
                "see the instance's events in the RDS console (or `aws rds describe-events`)",
            )
        if waited >= timeout:
            raise AwsProblem(
                f'"{identifier}" is still {current} after {waited / 60:.0f} minutes',
                "RDS is still working on it; check later with `cruddur rds status`",
            )
        time.sleep(interval)
