"""Scaling the RDS instance out: read replicas (create, promote, their lag) and an RDS
Proxy in front of it (the proxy, the IAM role that reads the master secret, its target).

Functions take boto3 clients (`cruddur.aws.client(…)`) so the CLI and the tests choose
where they point, as in `cruddur.aws.rds`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from cruddur.aws.problems import AwsProblem
from cruddur.aws.rds import Instance, MasterCredentials, describe, identifier_problem, require

# -- read replicas ---------------------------------------------------------------------


def create_replica(
    rds: Any,
    source_identifier: str,
    replica_identifier: str,
    *,
    instance_class: str | None = None,
) -> tuple[Instance, bool]:
    """Ask RDS for a read replica of the source. (replica, False) when one by that name
    exists already."""
    existing = describe(rds, replica_identifier)
    if existing is not None:
        if existing.replica_source != source_identifier:
            raise AwsProblem(
                f'"{replica_identifier}" exists and is not a replica of "{source_identifier}"',
                "pick another --replica-identifier",
            )
        return existing, False
    source = require(rds, source_identifier)
    if source.replica_source is not None:
        raise AwsProblem(
            f'"{source_identifier}" is itself a replica (of "{source.replica_source}")',
            "make replicas of the primary",
        )
    if not source.backup_retention_days:
        # RDS refuses too, but only after a round trip and in its own words.
        raise AwsProblem(
            f'"{source_identifier}" keeps no automated backups, and RDS makes replicas only '
            "of instances that do",
            f"aws rds modify-db-instance --db-instance-identifier {source_identifier} "
            "--backup-retention-period 7 --apply-immediately (or create it with "
            "`cruddur rds create --production`)",
        )
    params: dict[str, Any] = {
        "DBInstanceIdentifier": replica_identifier,
        "SourceDBInstanceIdentifier": source_identifier,
        "PubliclyAccessible": source.public,
    }
    if instance_class:
        params["DBInstanceClass"] = instance_class
    reply = rds.create_db_instance_read_replica(**params)
    return Instance.from_api(reply["DBInstance"]), True


def promote_replica(rds: Any, identifier: str) -> Instance:
    """Make the replica a standalone instance that takes writes (it stops following)."""
    replica = require(rds, identifier)
    if replica.replica_source is None:
        raise AwsProblem(
            f'"{identifier}" is not a read replica; there is nothing to promote',
            "`cruddur rds status` lists the instance's replicas",
        )
    reply = rds.promote_read_replica(DBInstanceIdentifier=identifier)
    return Instance.from_api(reply["DBInstance"])


def replica_lag_seconds(cloudwatch: Any, identifier: str) -> float | None:
    """The replica's latest ReplicaLag (CloudWatch, one-minute figures of the last five
    minutes); None when RDS has reported none yet."""
    now = datetime.now(UTC)
    found = cloudwatch.get_metric_statistics(
        Namespace="AWS/RDS",
        MetricName="ReplicaLag",
        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": identifier}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),  # the current, unfinished minute too
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    if not found:
        return None
    return float(max(found, key=lambda point: point["Timestamp"])["Maximum"])


# -- RDS Proxy --------------------------------------------------------------------------

PROXY_ROLE_POLICY = "read-the-database-secret"
PROXY_PORT = 5432  # an RDS Proxy for PostgreSQL listens here, whatever its instance's port


@dataclass(frozen=True)
class Proxy:
    name: str
    status: str
    endpoint: str | None
    require_tls: bool
    targets: tuple[str, ...]  # instance identifiers it routes to

    def connection_url(self, instance: Instance) -> str | None:
        """CONNECTION_URL through the proxy, password as ***. On PostgreSQL's own port:
        a proxy listens there whatever port its instance has (AWS's RDS Proxy
        limitations); the instance's port made a URL that never connected."""
        if not self.endpoint:
            return None
        url = instance.connection_url()
        if not url:
            return None
        at = f"@{instance.endpoint}:{instance.port or PROXY_PORT}/"
        return url.replace(at, f"@{self.endpoint}:{PROXY_PORT}/")


def _proxy(rds: Any, data: dict[str, Any]) -> Proxy:
    name = data["DBProxyName"]
    try:
        targets = rds.describe_db_proxy_targets(DBProxyName=name)["Targets"]
    except ClientError:
        targets = []
    return Proxy(
        name=name,
        status=data.get("Status", "unknown"),
        endpoint=data.get("Endpoint"),
        require_tls=bool(data.get("RequireTLS")),
        targets=tuple(t["RdsResourceId"] for t in targets if t.get("RdsResourceId")),
    )


def proxies_for(rds: Any, identifier: str) -> list[Proxy]:
    """The proxies that route to this instance."""
    found = rds.describe_db_proxies().get("DBProxies", [])
    return [p for p in (_proxy(rds, data) for data in found) if identifier in p.targets]


def master_secret(
    secrets: Any, name: str, instance: Instance, credentials: MasterCredentials
) -> tuple[str, bool]:
    """A Secrets Manager secret in RDS's format for the master user: its ARN, and whether
    it was made now. An existing secret of that name is kept as it is."""
    try:
        return secrets.describe_secret(SecretId=name)["ARN"], False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    value = {
        "username": credentials.username,
        "password": credentials.password,
        "engine": "postgres",
        "host": instance.endpoint,
        "port": instance.port or 5432,
        "dbname": instance.db_name or "postgres",
    }
    created = secrets.create_secret(
        Name=name,
        Description=f"master user of {instance.identifier}, for its RDS Proxy",
        SecretString=json.dumps(value),
    )
    return created["ARN"], True


def delete_secret(secrets: Any, arn: str) -> None:
    """Remove a secret made by a run that then failed (at once: nothing uses it)."""
    secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


PROXY_ROLE_SUFFIX = "-secret-reader"  # the proxy's role: its name and this
_ROLE_NAME_MAX = 64  # IAM's limit on a role's name


def proxy_role_name(proxy: str) -> str:
    return f"{proxy}{PROXY_ROLE_SUFFIX}"


def proxy_name_problem(name: str) -> str | None:
    """Why `name` cannot be a proxy's here, or None: RDS's rule for a proxy's name (that
    of an instance's identifier), and its role's name within IAM's limit. Checked before
    anything is made: the master user's secret and the role came before RDS refused."""
    if identifier_problem(name):
        return (
            f"{name!r} is not an RDS Proxy name: 1-63 letters, digits and hyphens, "
            "starting with a letter, no -- and no hyphen at the end"
        )
    longest = _ROLE_NAME_MAX - len(PROXY_ROLE_SUFFIX)
    if len(name) > longest:
        return (
            f"{name!r} is too long for a proxy name here: its IAM role, "
            f"{proxy_role_name(name)}, would be over IAM's {_ROLE_NAME_MAX} characters "
            f"(the name may have {longest} at most)"
        )
    return None


def proxy_role(iam: Any, name: str, secret_arn: str) -> tuple[str, bool]:
    """An IAM role RDS Proxy assumes to read the secret (and only that): its ARN, and
    whether it was made now."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "rds.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}
        ],
    }
    made = False
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise
        made = True
        arn = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description="RDS Proxy reads the Cruddur database's master secret",
        )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name, PolicyName=PROXY_ROLE_POLICY, PolicyDocument=json.dumps(policy)
    )
    return arn, made


def delete_role(iam: Any, name: str) -> None:
    """Remove a proxy's role made by a run that then failed (its policy first: IAM
    deletes no role that still has one)."""
    with contextlib.suppress(ClientError):
        iam.delete_role_policy(RoleName=name, PolicyName=PROXY_ROLE_POLICY)
    iam.delete_role(RoleName=name)


def proxy_exists(rds: Any, name: str) -> bool:
    return _described_proxy(rds, name) is not None


def _described_proxy(rds: Any, name: str) -> dict[str, Any] | None:
    """DescribeDBProxies' entry for the proxy of that name, or None when there is none."""
    try:
        found = rds.describe_db_proxies(DBProxyName=name)["DBProxies"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "DBProxyNotFoundFault":
            raise
        return None
    return found[0] if found else None


@dataclass(frozen=True)
class ProxySpec:
    name: str
    instance: Instance
    secret_arn: str
    role_arn: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    idle_client_timeout: int = 1800

    def create_params(self) -> dict[str, Any]:
        return {
            "DBProxyName": self.name,
            "EngineFamily": "POSTGRESQL",
            "Auth": [
                {
                    "AuthScheme": "SECRETS",
                    "SecretArn": self.secret_arn,
                    "IAMAuth": "DISABLED",
                    "Description": "the master user, from its secret",
                }
            ],
            "RoleArn": self.role_arn,
            "VpcSubnetIds": list(self.subnet_ids),
            "VpcSecurityGroupIds": list(self.security_group_ids),
            "RequireTLS": True,  # clients verify it with the RDS CA (README, "Security")
            "IdleClientTimeout": self.idle_client_timeout,
        }


def existing_proxy(rds: Any, name: str, identifier: str) -> tuple[Proxy, str] | None:
    """The proxy of that name when there is one, and what was done: "existed" (it routes
    to the instance) or "target registered" (a proxy an earlier run made, then failed to
    register the instance on); None when there is none. One that routes to another
    instance is refused. Asked before anything is made for a new proxy: a run refused
    here had made a secret, and rewritten the other proxy's role to read it."""
    found = _described_proxy(rds, name)
    if found is None:
        return None
    # Read here, not through _proxy (which takes an unreadable list for an empty one): a
    # target list that could not be read must not be taken for none.
    listed = rds.describe_db_proxy_targets(DBProxyName=name)["Targets"]
    targets = [t["RdsResourceId"] for t in listed if t.get("RdsResourceId")]
    if identifier in targets:
        return _proxy(rds, found), "existed"
    if targets:
        raise AwsProblem(
            f"the proxy {name} exists and routes to {', '.join(targets)}, not {identifier}",
            "give this one another name with --name",
        )
    # Made by a run whose register call failed (rds:RegisterDBProxyTargets denied): left
    # so, every connection through it would find no database.
    rds.register_db_proxy_targets(DBProxyName=name, DBInstanceIdentifiers=[identifier])
    return _proxy(rds, found), "target registered"


def create_proxy(rds: Any, spec: ProxySpec) -> Proxy:
    """A new proxy and its target, the instance (existing_proxy has found none)."""
    created = rds.create_db_proxy(**spec.create_params())["DBProxy"]
    rds.register_db_proxy_targets(
        DBProxyName=spec.name, DBInstanceIdentifiers=[spec.instance.identifier]
    )
    return _proxy(rds, created)
