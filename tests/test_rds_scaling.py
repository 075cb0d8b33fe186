"""`cruddur rds create-replica / promote-replica / create-proxy`, and what `status` and
`delete` say about replicas and proxies, against moto's server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner, Result
from helpers import run
from test_rds import CREDENTIALS, CRUDDUR, PASSWORD, make_instance, readmes_operator

from cruddur.aws import client, replicas
from cruddur.aws import rds as ops
from cruddur.aws.errors import permission_denied
from cruddur.cli import main
from cruddur.rds_tls import AMAZON_ROOTS

ID = ops.DEFAULT_IDENTIFIER
REPLICA = f"{ID}-replica-1"


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["rds", *args], env=env, input=stdin)


def make_primary(backups: int = 7, **extra: Any) -> None:
    make_instance(BackupRetentionPeriod=backups, **extra)


def describe(identifier: str) -> dict[str, Any]:
    return client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]


def test_create_replica_makes_one_prints_its_reader_url_and_repeats_harmlessly(aws) -> None:
    make_primary()
    made = cli("create-replica", "--wait", "--poll-interval", "1")
    assert made.exit_code == 0, made.output
    assert describe(REPLICA)["ReadReplicaSourceDBInstanceIdentifier"] == ID
    assert REPLICA in describe(ID)["ReadReplicaDBInstanceIdentifiers"]
    assert 'export READER_CONNECTION_URL="postgresql://cruddurroot:***@' in made.output
    assert PASSWORD not in made.output
    again = cli("create-replica")
    assert again.exit_code == 0 and "already exists" in again.output


def test_a_replica_name_made_too_long_is_refused_before_rds_is_asked(aws) -> None:
    long = "a" + "b" * 58  # 59 characters: the replica's would be 69
    refused = cli("create-replica", "--identifier", long)
    assert refused.exit_code == 2, refused.output
    assert "--replica-identifier" in refused.output
    assert not client("rds").describe_db_instances()["DBInstances"]


def test_create_replica_refuses_a_primary_without_backups(aws) -> None:
    make_primary(backups=0)
    refused = cli("create-replica")
    assert refused.exit_code == 1
    assert "keeps no automated backups" in refused.output
    assert "--backup-retention-period" in refused.output


def test_status_lists_replicas_with_their_lag(aws) -> None:
    make_primary()
    assert cli("create-replica").exit_code == 0
    client("cloudwatch").put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[
            {
                "MetricName": "ReplicaLag",
                "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": REPLICA}],
                "Timestamp": datetime.now(UTC),
                "Value": 0.4,
                "Unit": "Seconds",
            }
        ],
    )
    shown = cli("status")
    assert shown.exit_code == 0, shown.output
    assert f"replica         {REPLICA} (available, 0.4 s behind)" in shown.output
    assert "reader url" in shown.output and PASSWORD not in shown.output
    of_replica = cli("status", "--identifier", REPLICA)
    assert f"replica of      {ID}" in of_replica.output


def test_status_with_the_readmes_policy_shows_a_replica_without_its_lag(aws, monkeypatch) -> None:
    # The README's policy has no cloudwatch:GetMetricStatistics: once the instance had a
    # replica, status failed whole with a 403 where it shows the rest.
    make_primary()
    assert cli("create-replica").exit_code == 0
    status = run(CRUDDUR, "rds", "status", env=readmes_operator(aws, monkeypatch))
    assert status.returncode == 0, status.stderr
    assert f"identifier      {ID}" in status.stdout
    lacks = "lag not looked up: this identity lacks cloudwatch:GetMetricStatistics"
    assert f"replica         {REPLICA} (available, {lacks})" in status.stdout
    assert "reader url" in status.stdout
    assert "not looked up: this identity lacks rds:DescribeDBProxies" in status.stdout
    # Only a refusal is shown on the row; any other error still stops the command.
    throttled = ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "Get")
    assert not permission_denied(throttled)
    assert permission_denied(ClientError({"Error": {"Code": "AccessDenied"}}, "Get"))


def test_promote_asks_first_then_makes_the_replica_standalone(aws, monkeypatch) -> None:
    make_primary()
    assert cli("create-replica").exit_code == 0
    refused = cli("promote-replica", REPLICA, stdin="wrong\n")
    assert refused.exit_code == 1 and "nothing promoted" in refused.output
    assert describe(REPLICA).get("ReadReplicaSourceDBInstanceIdentifier") == ID
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "cruddur.aws.replicas.promote_replica",
        lambda rds, identifier, real=replicas.promote_replica: (
            sent.append(identifier) or real(rds, identifier)
        ),
    )
    promoted = cli("promote-replica", REPLICA, stdin=f"{REPLICA}\n")
    assert promoted.exit_code == 0, promoted.output
    # moto keeps the promoted instance's source in its answers: what was sent is checked.
    assert sent == [REPLICA] and f"promoting {REPLICA}" in promoted.output
    not_a_replica = cli("promote-replica", ID, "--yes")
    assert not_a_replica.exit_code == 1 and "not a read replica" in not_a_replica.output


def test_delete_refuses_a_primary_with_replicas_unless_told(aws) -> None:
    make_primary()
    assert cli("create-replica").exit_code == 0
    refused = cli("delete", "--skip-final-snapshot", "--yes")
    assert refused.exit_code == 1
    assert f"still has read replicas: {REPLICA}" in refused.output
    assert describe(ID)["DBInstanceStatus"] == "available"
    deleted = cli("delete", "--skip-final-snapshot", "--orphan-replicas", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "become standalone instances" in deleted.output


def _two_subnets(octet: int) -> tuple[list[str], str]:
    """A VPC 10.<octet>.0.0/16 with a subnet in each of two zones, and a security group."""
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock=f"10.{octet}.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.{octet}.{n}.0/24", AvailabilityZone=f"us-east-1{z}"
        )["Subnet"]["SubnetId"]
        for n, z in ((1, "a"), (2, "b"))
    ]
    group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    return subnets, group


def test_create_proxy_makes_the_secret_the_role_the_proxy_and_its_target(aws) -> None:
    subnets, group = _two_subnets(9)
    make_primary(VpcSecurityGroupIds=[group])
    args = ["create-proxy", *[x for s in subnets for x in ("--subnet-id", s)]]
    made = cli(*args, env=CREDENTIALS)
    assert made.exit_code == 0, made.output
    assert PASSWORD not in made.output

    proxy = client("rds").describe_db_proxies(DBProxyName=f"{ID}-proxy")["DBProxies"][0]
    assert proxy["EngineFamily"] == "POSTGRESQL" and proxy["RequireTLS"] is True
    assert sorted(proxy["VpcSubnetIds"]) == sorted(subnets)
    targets = client("rds").describe_db_proxy_targets(DBProxyName=f"{ID}-proxy")["Targets"]
    assert [t["RdsResourceId"] for t in targets] == [ID]

    secret_arn = proxy["Auth"][0]["SecretArn"]
    secret = json.loads(
        client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    )
    assert (secret["username"], secret["password"]) == ("cruddurroot", PASSWORD)
    role = proxy["RoleArn"].rsplit("/", 1)[1]
    policy = client("iam").get_role_policy(RoleName=role, PolicyName="read-the-database-secret")
    statement = policy["PolicyDocument"]["Statement"]
    assert statement == [
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}
    ]
    assert 'export CONNECTION_URL="postgresql://cruddurroot:***@' in made.output
    # Amazon's roots, which its certificate chains to, not the RDS bundle (cruddur.rds_tls).
    assert f"sslrootcert={AMAZON_ROOTS}" in " ".join(made.output.split())

    shown = cli("status")
    assert f"proxy           {ID}-proxy" in shown.output and "TLS required" in shown.output
    again = cli(*args, env=CREDENTIALS)
    assert again.exit_code == 0 and "already exists" in again.output


def test_a_proxy_name_rds_or_iam_would_refuse_is_refused_before_anything_is_made(aws) -> None:
    # A review: `--name 'bad--name!'`, or the default name of a 63-character identifier,
    # made the master user's secret and the IAM role before RDS refused the name.
    subnets, group = _two_subnets(7)
    long_id = "a" + "b" * 61 + "c"
    make_primary(VpcSecurityGroupIds=[group])
    given = [x for s in subnets for x in ("--subnet-id", s)]
    for args, words in (
        (["--name", "bad--name!"], "is not an RDS Proxy name"),
        (["--name", "p" * 51], "would be over IAM's 64 characters"),
        (["--identifier", long_id], "(the default, IDENTIFIER-proxy): give --name"),
    ):
        refused = cli("create-proxy", *given, *args, env=CREDENTIALS)
        assert refused.exit_code == 2, refused.output
        assert words in " ".join(refused.output.split()), refused.output
    assert client("secretsmanager").list_secrets()["SecretList"] == []
    assert client("iam").list_roles()["Roles"] == []
    assert client("rds").describe_db_proxies()["DBProxies"] == []
    made = cli("create-proxy", *given, "--name", "p" * 50, env=CREDENTIALS)
    assert made.exit_code == 0, made.output


def test_a_proxy_rds_refuses_leaves_no_secret_or_role_this_run_made(aws) -> None:
    # A review: subnets RDS refused (checked only when the proxy is asked for) left the
    # master user's secret and the role behind, one more role for each --name tried.
    make_primary()
    bad = ["--subnet-id", "subnet-1", "--subnet-id", "subnet-2"]
    for name in ("one", "two"):
        refused = cli("create-proxy", *bad, "--name", name, env=CREDENTIALS)
        assert refused.exit_code == 1, refused.output
        assert "removed the role and the secret this run made" in refused.output
    assert client("secretsmanager").list_secrets()["SecretList"] == []
    assert client("iam").list_roles()["Roles"] == []
    # A secret that was there already is not this run's: kept.
    subnets, _ = _two_subnets(6)
    made = cli("create-proxy", *[x for s in subnets for x in ("--subnet-id", s)], env=CREDENTIALS)
    assert made.exit_code == 0, made.output
    again = cli("create-proxy", *bad, "--name", "three", env=CREDENTIALS)
    assert again.exit_code == 1 and "removed the role this run made" in again.output
    assert len(client("secretsmanager").list_secrets()["SecretList"]) == 1
    assert [r["RoleName"] for r in client("iam").list_roles()["Roles"]] == [
        f"{ID}-proxy-secret-reader"
    ]
    # --name '' is a name RDS would refuse, not the default.
    empty = cli("create-proxy", *bad, "--name", "", env=CREDENTIALS)
    assert empty.exit_code == 2 and "is not an RDS Proxy name" in empty.output


def test_a_proxy_name_another_instance_uses_is_refused_before_anything_is_made(aws) -> None:
    # A review: the refusal came after this instance's secret was made (and kept) and
    # the other proxy's role rewritten to read it, not the secret that proxy logs in with.
    subnets, group = _two_subnets(5)
    given = [x for s in subnets for x in ("--subnet-id", s)]
    make_primary(VpcSecurityGroupIds=[group])
    client("rds").create_db_instance(
        DBInstanceIdentifier="other", DBInstanceClass="db.t3.micro", Engine="postgres",
        MasterUsername="cruddurroot", MasterUserPassword=PASSWORD, DBName="cruddur",
    )  # fmt: skip
    assert cli("create-proxy", *given, "--name", "shared", env=CREDENTIALS).exit_code == 0
    iam, role = client("iam"), "shared-secret-reader"
    policy = iam.get_role_policy(RoleName=role, PolicyName="read-the-database-secret")
    secrets = client("secretsmanager").list_secrets()["SecretList"]
    refused = cli(
        "create-proxy", "--identifier", "other", *given, "--name", "shared", env=CREDENTIALS
    )
    assert refused.exit_code == 1, refused.output
    assert f"the proxy shared exists and routes to {ID}, not other" in refused.output
    assert "secret:" not in refused.output and "role:" not in refused.output
    assert client("secretsmanager").list_secrets()["SecretList"] == secrets
    again = iam.get_role_policy(RoleName=role, PolicyName="read-the-database-secret")
    assert again["PolicyDocument"] == policy["PolicyDocument"]
    # Run again for its own instance with another secret: the proxy, its secret and its
    # role are left as they are.
    rerun = cli(
        "create-proxy", *given, "--name", "shared", "--secret-arn", "arn:aws:x", env=CREDENTIALS
    )
    assert rerun.exit_code == 0 and "already exists" in rerun.output
    after = iam.get_role_policy(RoleName=role, PolicyName="read-the-database-secret")
    assert after["PolicyDocument"] == policy["PolicyDocument"]


def test_a_proxys_url_is_on_postgresqls_port_whatever_the_instances(aws) -> None:
    # It took the instance's port (5433 here); a proxy listens on 5432 whatever the
    # instance's, so the URL it printed never connected.
    subnets, group = _two_subnets(8)
    make_primary(VpcSecurityGroupIds=[group], Port=5433)
    made = cli("create-proxy", *[x for s in subnets for x in ("--subnet-id", s)], env=CREDENTIALS)
    assert made.exit_code == 0, made.output
    (line,) = [x for x in made.output.splitlines() if x.startswith("export CONNECTION_URL=")]
    assert ".rds.amazonaws.com:5432/" in line and ":5433/" not in line, line
    shown = " ".join(cli("status").output.split())
    assert "proxy url" in shown and ":5433/cruddur" in shown  # the instance's own stays
    assert shown.count(":5432/cruddur") == 1


def _bare_proxy(name: str, subnets: list[str]) -> None:
    """A proxy with no target, made directly (as a run that failed after making it)."""
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"
    client("rds").create_db_proxy(
        DBProxyName=name, EngineFamily="POSTGRESQL", VpcSubnetIds=subnets,
        RoleArn="arn:aws:iam::123456789012:role/r",
        Auth=[{"AuthScheme": "SECRETS", "SecretArn": secret}],
    )  # fmt: skip


def test_create_proxy_finishes_a_proxy_an_earlier_run_left_without_a_target(aws) -> None:
    # The first run made the proxy, then could not register the instance (no
    # rds:RegisterDBProxyTargets): the next run said "left as it is" and printed a
    # CONNECTION_URL through a proxy that reached no database.
    subnets, group = _two_subnets(8)
    make_primary(VpcSecurityGroupIds=[group])
    rds = client("rds")
    _bare_proxy(f"{ID}-proxy", subnets)
    args = ["create-proxy", *[x for s in subnets for x in ("--subnet-id", s)]]
    finished = cli(*args, env=CREDENTIALS)
    assert finished.exit_code == 0, finished.output
    assert f"{ID} registered as its target" in finished.output
    targets = rds.describe_db_proxy_targets(DBProxyName=f"{ID}-proxy")["Targets"]
    assert [t["RdsResourceId"] for t in targets] == [ID]
    # A proxy of that name routing to another instance is not taken over.
    _bare_proxy("elsewhere", subnets)
    rds.create_db_instance(
        DBInstanceIdentifier="other-db", DBInstanceClass="db.t3.micro", Engine="postgres",
        MasterUsername="u", MasterUserPassword="passwordpassword", AllocatedStorage=20,
    )  # fmt: skip
    rds.register_db_proxy_targets(DBProxyName="elsewhere", DBInstanceIdentifiers=["other-db"])
    refused = cli(*args, "--name", "elsewhere", env=CREDENTIALS)
    assert refused.exit_code == 1, refused.output
    assert "routes to other-db" in refused.output


def test_create_proxy_without_the_master_user_says_what_it_is_for(aws) -> None:
    # Its hint was `rds create`'s: "they become the instance's master user".
    subnets, group = _two_subnets(7)
    make_primary(VpcSecurityGroupIds=[group])
    args = ["create-proxy", *[x for s in subnets for x in ("--subnet-id", s)]]
    refused = cli(*args, env={"MASTER_USERNAME": "", "MASTER_USER_PASSWORD": ""})
    said = " ".join(refused.output.split())
    assert refused.exit_code == 1, said
    assert "MASTER_USERNAME and MASTER_USER_PASSWORD are not set" in said
    assert "the proxy logs in as it), or give --secret-arn" in said
    assert "become the instance's master user" not in said


def test_create_proxy_with_a_bad_proxy_roots_setting_creates_nothing(aws, tmp_path) -> None:
    # It made the proxy, printed its URL, then failed on the setting with exit 1.
    subnets, group = _two_subnets(6)
    make_primary(VpcSecurityGroupIds=[group])
    args = ["create-proxy", *[x for s in subnets for x in ("--subnet-id", s)]]
    refused = cli(*args, env={**CREDENTIALS, "CRUDDUR_RDS_PROXY_CA_BUNDLE": str(tmp_path / "x")})
    assert refused.exit_code == 1, refused.output
    assert "CRUDDUR_RDS_PROXY_CA_BUNDLE" in refused.output
    assert client("rds").describe_db_proxies()["DBProxies"] == []


def test_create_proxy_needs_two_subnets(aws) -> None:
    make_primary()
    refused = cli("create-proxy", env=CREDENTIALS)
    assert refused.exit_code == 1 and "--subnet-id" in refused.output


def test_create_proxy_never_registers_when_the_targets_cannot_be_read(aws) -> None:
    # An unreadable target list (AccessDenied) was taken for an empty one: the instance
    # was registered on a proxy that may route elsewhere.
    subnets, _ = _two_subnets(7)
    make_primary()
    _bare_proxy(f"{ID}-proxy", subnets)
    real = client("rds")
    registered: list[dict] = []

    class Denying:
        def __getattr__(self, name: str):
            return getattr(real, name)

        def describe_db_proxy_targets(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "Describe")

        def register_db_proxy_targets(self, **kwargs):
            registered.append(kwargs)

    with pytest.raises(ClientError):
        replicas.existing_proxy(Denying(), f"{ID}-proxy", ID)
    assert registered == []
