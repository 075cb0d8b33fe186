"""`cruddur rds …` against moto's server: the instance's life, its options, no password shown."""

from __future__ import annotations

import logging
import subprocess
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from click.testing import CliRunner, Result
from helpers import ROOT, run

from cruddur.aws import client
from cruddur.aws import rds as ops
from cruddur.aws.problems import AwsProblem
from cruddur.cli import main
from cruddur.config import Settings
from cruddur.targets import resolve
from cruddur.urls import parse, redact

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"
PASSWORD = "Zq8-unlikely-Secret_42!"
CREDENTIALS = {"MASTER_USERNAME": "cruddurroot", "MASTER_USER_PASSWORD": PASSWORD}
ID = ops.DEFAULT_IDENTIFIER


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """The command in this process (fast); the subprocess tests cover the real thing."""
    return CliRunner().invoke(main, ["rds", *args], env=env, input=stdin)


def describe(identifier: str = ID) -> dict[str, Any]:
    return client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]


def exists(identifier: str = ID) -> bool:
    try:
        describe(identifier)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "DBInstanceNotFound"
        return False
    return True


def make_instance(**extra: Any) -> None:
    client("rds").create_db_instance(
        DBInstanceIdentifier=ID,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="cruddurroot",
        MasterUserPassword=PASSWORD,
        DBName="cruddur",
        **extra,
    )


# -- create and status -------------------------------------------------------------


def test_create_then_status(aws: dict[str, str], tmp_path) -> None:
    created = run(
        CRUDDUR, "rds", "create", "--wait", "--poll-interval", "1", env={**aws, **CREDENTIALS}
    )
    assert created.returncode == 0, created.stderr
    endpoint = f"{ID}.aaaaaaaaaa.us-east-1.rds.amazonaws.com"
    url = f"postgresql://cruddurroot:***@{endpoint}:5432/cruddur?sslmode=verify-full"
    assert f'export PROD_CONNECTION_URL="{url}"' in created.stdout
    assert "sslmode=verify-full: the server must prove" in created.stderr
    assert "first: it fetches it" not in created.stderr  # the tests' bundle is there
    assert f"{ID}: available" in created.stderr  # the wait's progress line
    assert "public IPv4" in created.stderr  # the cost the original's users did not expect

    # What RDS was asked for: the original's instance, on a current major version.
    found = describe()
    assert found["DBInstanceClass"] == "db.t3.micro"
    assert found["Engine"] == "postgres"
    assert found["EngineVersion"] == ops.DEFAULT_ENGINE_VERSION
    assert found["AllocatedStorage"] == 20
    assert found["StorageType"] == "gp2"
    assert found["StorageEncrypted"] is True
    assert found["PubliclyAccessible"] is True
    assert found["MultiAZ"] is False
    assert found["BackupRetentionPeriod"] == 0
    assert found["DeletionProtection"] is False
    assert found["DBName"] == "cruddur"
    assert found["MasterUsername"] == "cruddurroot"
    assert found["Endpoint"]["Port"] == 5432

    status = run(CRUDDUR, "rds", "status", env=aws)
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(None, 1) for line in status.stdout.splitlines() if " " in line)
    assert lines["identifier"] == ID
    assert lines["state"] == "available"
    assert lines["class"] == "db.t3.micro"
    assert lines["engine"] == f"postgres {ops.DEFAULT_ENGINE_VERSION}"
    assert lines["endpoint"] == endpoint
    assert lines["port"] == "5432"
    assert lines["public"] == "yes"
    group = found["VpcSecurityGroups"][0]["VpcSecurityGroupId"]
    assert f"security groups {group} (active)" in status.stdout
    assert lines["url"] == url
    assert "RDS CA bundle" in status.stderr
    # No bundle fetched yet (it is on first use): the path named for psql is said to need
    # `rds ca-bundle` first (psql given it failed on a missing file).
    fresh = {**aws, "CRUDDUR_RDS_CA_BUNDLE": "", "CRUDDUR_HOME": str(tmp_path)}
    unfetched = run(CRUDDUR, "rds", "status", env=fresh)
    assert "rds ca-bundle` first: it fetches it)" in unfetched.stderr


def test_provisioned_iops_are_asked_for_before_rds_is(aws: dict[str, str]) -> None:
    # `--storage-type io1` without IOPS said "creating …" and then failed on RDS's refusal.
    for args, said in (
        (("--storage-type", "io1"), "io1 storage is provisioned IOPS: give --iops"),
        (("--storage-type", "io2"), "io2 storage is provisioned IOPS: give --iops"),
        (("--iops", "3000"), "gp2 storage takes no --iops"),
        (("--storage-type", "io1", "--iops", "1000"), "io1 storage starts at 100 GB"),
        (("--storage-type", "st1"), "'st1' is not one of 'gp2', 'gp3', 'io1', 'io2'"),
    ):
        refused = cli("create", "--identifier", "iops-db", *args, env=CREDENTIALS)
        assert refused.exit_code == 2, refused.output
        assert said in " ".join(refused.stderr.split()), refused.stderr
        assert "creating" not in refused.output
    assert client("rds").describe_db_instances()["DBInstances"] == []
    made = cli(
        *("create", "--identifier", "iops-db", "--storage-type", "io1", "--storage", "100"),
        *("--iops", "3000"),
        env=CREDENTIALS,
    )
    assert made.exit_code == 0, made.output
    assert "100 GB io1 3,000 IOPS" in made.stderr
    found = describe("iops-db")
    assert (found["StorageType"], found["Iops"]) == ("io1", 3000)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--db-name", "bad name"), "'bad name' is not a database name RDS makes"),
        (("--db-name", "1st"), "'1st' is not a database name RDS makes"),
        (("--instance-class", ""), "'' is not an instance class"),
        (("--instance-class", "t4g.micro"), "'t4g.micro' is not an instance class"),
        (("--engine-version", "abc"), "'abc' is not a PostgreSQL version"),
        (("--performance-insights-days", "8"), "8 is not 7, a multiple of 31 up to 713, or 731"),
        (("--performance-insights-days", "744"), "744 is not 7"),
    ],
)
def test_options_rds_would_refuse_are_refused_before_it_is_asked(
    aws: dict[str, str], args: tuple[str, ...], said: str
) -> None:
    # Each was sent as it was, after "creating …" had been printed.
    refused = cli("create", "--identifier", "shape-db", *args, env=CREDENTIALS)
    assert refused.exit_code == 2, refused.output
    assert said in " ".join(refused.stderr.split()), refused.stderr
    assert "creating" not in refused.output
    assert client("rds").describe_db_instances()["DBInstances"] == []


def test_an_extended_support_version_is_taken(aws: dict[str, str]) -> None:
    made = cli(
        "create", "--identifier", "es-db", "--engine-version", "12.22-rds.20250220",
        env=CREDENTIALS,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert describe("es-db")["EngineVersion"] == "12.22-rds.20250220"


def test_every_option_reaches_rds(aws: dict[str, str]) -> None:
    result = cli(
        *("create", "--identifier", "other-db", "--instance-class", "db.t4g.small"),
        *("--engine-version", "16.4", "--storage", "30", "--storage-type", "gp3"),
        *("--port", "5433", "--db-name", "elsewhere", "--private", "--multi-az"),
        *("--backup-retention", "3", "--deletion-protection", "--unencrypted"),
        env=CREDENTIALS,
    )
    assert result.exit_code == 0, result.stderr
    found = describe("other-db")
    assert found["DBInstanceClass"] == "db.t4g.small"
    assert found["EngineVersion"] == "16.4"
    assert found["AllocatedStorage"] == 30
    assert found["StorageType"] == "gp3"
    assert found["Endpoint"]["Port"] == 5433
    assert found["DBName"] == "elsewhere"
    assert found["PubliclyAccessible"] is False
    assert found["MultiAZ"] is True
    assert found["BackupRetentionPeriod"] == 3
    assert found["DeletionProtection"] is True
    assert found["StorageEncrypted"] is False
    assert "public IPv4" not in result.stderr


def test_create_says_what_each_choice_means(aws: dict[str, str]) -> None:
    result = cli("create", env=CREDENTIALS)
    assert result.exit_code == 0, result.stderr
    for meaning in (
        "public: it has an address on the internet",
        "no backups: a broken or deleted instance cannot be restored",
        "no deletion protection: one delete call removes it",
        "single-AZ: if its host or zone fails",
        "`--production` asks for the safe set",
    ):
        assert meaning in result.stderr
    found = describe()  # the original's choices, kept
    assert (found["PubliclyAccessible"], found["BackupRetentionPeriod"]) == (True, 0)
    assert (found["DeletionProtection"], found["MultiAZ"]) == (False, False)


def test_create_production_asks_for_the_safe_set(aws: dict[str, str]) -> None:
    result = cli("create", "--production", env=CREDENTIALS)
    assert result.exit_code == 0, result.stderr
    found = describe()
    assert found["PubliclyAccessible"] is False
    assert found["BackupRetentionPeriod"] == 7
    assert found["DeletionProtection"] is True
    assert found["MultiAZ"] is True
    for meaning in ("private: only resources inside its VPC", "backups: 7 days", "Multi-AZ: a"):
        assert meaning in result.stderr
    # A flag given explicitly still wins.
    cli("create", "--production", "--identifier", "demo", "--public", env=CREDENTIALS)
    assert describe("demo")["PubliclyAccessible"] is True
    assert describe("demo")["DeletionProtection"] is True


def test_performance_insights_parameters() -> None:
    # moto does not keep Performance Insights settings, so check what is sent.
    credentials = ops.MasterCredentials("cruddurroot", PASSWORD)
    sent = ops.InstanceSpec().create_params(credentials)
    assert sent["EnablePerformanceInsights"] is True
    assert sent["PerformanceInsightsRetentionPeriod"] == 7
    off = ops.InstanceSpec(performance_insights=False).create_params(credentials)
    assert off["EnablePerformanceInsights"] is False
    assert "PerformanceInsightsRetentionPeriod" not in off
    assert PASSWORD not in repr(credentials)


def test_create_leaves_an_existing_instance_alone(aws: dict[str, str]) -> None:
    make_instance(AllocatedStorage=50)
    result = cli("create", env=CREDENTIALS)
    assert result.exit_code == 0, result.stderr
    assert "already exists" in result.stderr
    assert describe()["AllocatedStorage"] == 50


def test_create_wait_on_a_stopped_instance_says_to_start_it_at_once(
    aws: dict[str, str],
) -> None:
    # A review: --wait polled a stopped instance for its whole timeout (45 minutes by
    # default), then said RDS was still working on it.
    make_instance()
    client("rds").stop_db_instance(DBInstanceIdentifier=ID)
    result = cli("create", "--wait", "--poll-interval", "1", "--timeout", "0.5", env=CREDENTIALS)
    assert result.exit_code == 0, result.stderr
    assert "already exists (stopped)" in result.stderr
    assert "`cruddur rds start --wait` makes it available" in result.stderr
    assert "still stopped" not in result.stderr


def test_create_refuses_without_credentials(aws: dict[str, str]) -> None:
    env = {**aws, "MASTER_USERNAME": "", "MASTER_USER_PASSWORD": ""}
    result = run(CRUDDUR, "rds", "create", env=env)
    assert result.returncode == 1
    assert "error: MASTER_USERNAME and MASTER_USER_PASSWORD are not set" in result.stderr
    assert "Traceback" not in result.stderr
    only_user = cli("create", env={"MASTER_USERNAME": "cruddurroot", "MASTER_USER_PASSWORD": ""})
    assert only_user.exit_code == 1
    assert "MASTER_USER_PASSWORD is not set" in only_user.stderr
    assert not exists()


@pytest.mark.parametrize(
    ("password", "complaint"),
    [
        ("short7!", "must be 8-128 characters long (it has 7)"),
        ("x" * 129, "must be 8-128 characters long (it has 129)"),
        ("has@an-at-sign", "characters RDS refuses: @"),
        ('quote"and/slash', 'characters RDS refuses: /, "'),
        ("with a space", "characters RDS refuses: a space"),
        ("n\u00f6n-ascii-pass", "outside printable ASCII"),
        ("tab\there-pass", "outside printable ASCII"),
    ],
)
def test_create_refuses_a_password_rds_would(aws: dict[str, str], password: str, complaint: str):
    result = cli("create", env={"MASTER_USERNAME": "cruddurroot", "MASTER_USER_PASSWORD": password})
    assert result.exit_code == 1
    assert "error: MASTER_USER_PASSWORD " in result.stderr
    assert complaint in result.stderr
    assert password not in result.output + result.stderr
    assert not exists()


@pytest.mark.parametrize(
    ("username", "complaint"),
    [
        ("1cruddur", "must be 1-16 letters"),
        ("cruddur-root", "must be 1-16 letters"),
        ("c" * 17, "must be 1-16 letters"),
        ("user", "reserves"),
        ("rdsadmin", "reserves"),
    ],
)
def test_create_refuses_a_user_name_rds_would(aws: dict[str, str], username: str, complaint: str):
    result = cli("create", env={"MASTER_USERNAME": username, "MASTER_USER_PASSWORD": PASSWORD})
    assert result.exit_code == 1
    assert complaint in result.stderr
    assert not exists()


def test_postgres_is_a_fine_master_user_name() -> None:
    # The console's own default: not reserved, whatever one might guess.
    assert ops.username_problem("postgres") is None
    assert ops.username_problem("cruddurroot") is None


# -- stop, start, status -----------------------------------------------------------


def _change_state(
    verb: str, doing: str, state: str, aws: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`cruddur rds <verb> --wait` reaches the state; the same verb again does nothing
    (and asks nothing: the second stop has no --yes)."""
    confirmed = ("--yes",) if verb == "stop" else ()
    changed = run(CRUDDUR, "rds", verb, *confirmed, "--wait", "--poll-interval", "1", env=aws)
    assert changed.returncode == 0, changed.stderr
    assert f"{doing} {ID}" in changed.stderr
    assert describe()["DBInstanceStatus"] == state
    again = cli(verb)
    assert again.exit_code == 0, again.stderr
    assert f"{ID} is already {state}; nothing to do" in again.stderr
    return changed


def test_stop_and_start_change_the_state_and_repeat_harmlessly(aws: dict[str, str]) -> None:
    make_instance()
    stopped = _change_state("stop", "stopping", "stopped", aws)
    assert "after 7 days" in stopped.stderr
    status = cli("status")
    assert "state           stopped" in status.output
    assert "after 7 days" in status.stderr

    started = _change_state("start", "starting", "available", aws)
    assert "export PROD_CONNECTION_URL=" in started.stdout


def test_a_missing_instance_is_a_clear_error(aws: dict[str, str]) -> None:
    result = run(CRUDDUR, "rds", "status", "--identifier", "no-such-db", env=aws)
    assert result.returncode == 1
    assert 'error: no RDS instance "no-such-db"' in result.stderr
    assert "Traceback" not in result.stderr
    for verb in ("stop", "start"):
        other = cli(verb, "--identifier", "no-such-db")
        assert other.exit_code == 1
        assert 'no RDS instance "no-such-db"' in other.stderr


def test_stop_asks_for_the_identifier(aws: dict[str, str]) -> None:
    # Stopping production is an outage for every user: asked as delete asks.
    make_instance()
    no_answer = run(CRUDDUR, "rds", "stop", env=aws)
    assert no_answer.returncode == 1
    assert f"About to STOP the RDS instance {ID}" in no_answer.stderr
    assert "not confirmed, nothing stopped" in no_answer.stderr
    wrong = cli("stop", stdin="cruddur\n")
    assert wrong.exit_code == 1
    assert describe()["DBInstanceStatus"] == "available"

    typed = run(CRUDDUR, "rds", "stop", env=aws, stdin=f"{ID}\n")
    assert typed.returncode == 0, typed.stderr
    assert f"stopping {ID}" in typed.stderr
    assert describe()["DBInstanceStatus"] in ("stopping", "stopped")


def test_stop_yes_skips_the_question_and_start_never_asks(aws: dict[str, str]) -> None:
    make_instance()
    stopped = cli("stop", "-y")
    assert stopped.exit_code == 0, stopped.stderr
    assert "About to" not in stopped.stderr
    assert describe()["DBInstanceStatus"] in ("stopping", "stopped")
    started = cli("start", "--wait", "--poll-interval", "1")
    assert started.exit_code == 0, started.stderr
    assert "About to" not in started.stderr
    assert describe()["DBInstanceStatus"] == "available"
    says = cli("stop", "--help")
    assert "Asks you to type the identifier unless --yes" in " ".join(says.output.split())
    assert "-y, --yes" in says.output


# -- delete ------------------------------------------------------------------------


def test_delete_needs_a_snapshot_decision(aws: dict[str, str]) -> None:
    make_instance()
    neither = cli("delete", "--yes")
    assert neither.exit_code == 1
    assert "--final-snapshot NAME or --skip-final-snapshot" in neither.stderr
    both = cli("delete", "--yes", "--skip-final-snapshot", "--final-snapshot", "last")
    assert both.exit_code == 1
    assert "(not both)" in both.stderr
    for bad in ("1st", "final--one", "ends-", "under_score"):
        refused = cli("delete", "--yes", "--final-snapshot", bad)
        assert refused.exit_code == 1
        assert "is not one RDS takes" in refused.stderr
    assert exists()


def test_delete_asks_for_the_identifier(aws: dict[str, str]) -> None:
    make_instance()
    no_answer = run(CRUDDUR, "rds", "delete", "--skip-final-snapshot", env=aws)
    assert no_answer.returncode == 1
    assert "not confirmed, nothing deleted" in no_answer.stderr
    wrong = cli("delete", "--skip-final-snapshot", stdin="cruddur\n")
    assert wrong.exit_code == 1
    assert exists()

    typed = run(CRUDDUR, "rds", "delete", "--skip-final-snapshot", env=aws, stdin=f"{ID}\n")
    assert typed.returncode == 0, typed.stderr
    assert f"deleting {ID}, with NO final snapshot" in typed.stderr
    assert not exists()
    gone = cli("delete", "--skip-final-snapshot", "--yes")
    assert gone.exit_code == 1
    assert "no RDS instance" in gone.stderr


def test_delete_yes_keeps_a_final_snapshot(aws: dict[str, str]) -> None:
    make_instance()
    result = cli(
        "delete", "--yes", "--final-snapshot", "cruddur-last", "--wait", "--poll-interval", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert f"{ID} is deleted" in result.stderr
    assert not exists()
    snapshots = client("rds").describe_db_snapshots(DBSnapshotIdentifier="cruddur-last")
    assert snapshots["DBSnapshots"][0]["DBInstanceIdentifier"] == ID


def test_delete_refuses_an_instance_with_deletion_protection(aws: dict[str, str]) -> None:
    make_instance(DeletionProtection=True)
    result = cli("delete", "--yes", "--skip-final-snapshot")
    assert result.exit_code == 1
    assert "deletion protection" in result.stderr
    assert exists()


# -- waiting -----------------------------------------------------------------------


class Scripted:
    """An RDS client whose instance goes through the given states, one per look."""

    def __init__(self, *states: str | BaseException | None) -> None:
        self.states = list(states)

    def describe_db_instances(self, DBInstanceIdentifier: str) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, BaseException):
            raise state
        if state is None:
            error = {"Error": {"Code": "DBInstanceNotFound", "Message": "gone"}}
            raise ClientError(error, "DescribeDBInstances")  # type: ignore[arg-type]
        return {
            "DBInstances": [
                {"DBInstanceIdentifier": DBInstanceIdentifier, "DBInstanceStatus": state}
            ]
        }


def test_wait_follows_the_states_until_the_goal() -> None:
    seen: list[str | None] = []
    fake = Scripted("creating", "backing-up", "available")
    found = ops.wait_for(fake, ID, "available", interval=0, on_poll=lambda s, _: seen.append(s))
    assert found is not None and found.state == "available"
    assert seen == ["creating", "backing-up", "available"]
    assert ops.wait_for(Scripted("deleting", None), ID, None, interval=0) is None


def test_wait_stops_on_a_failed_state_and_on_timeout() -> None:
    with pytest.raises(AwsProblem, match="incompatible-parameters"):
        ops.wait_for(Scripted("creating", "incompatible-parameters"), ID, "available", interval=0)
    with pytest.raises(AwsProblem, match="still creating"):
        ops.wait_for(Scripted("creating"), ID, "available", interval=0, timeout=0)


def _aws_error(code: str, status: int = 400) -> ClientError:
    answer = {"Error": {"Code": code, "Message": "Rate exceeded"}}
    answer["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(answer, "DescribeDBInstances")  # type: ignore[arg-type]


def test_wait_looks_again_after_throttling_a_5xx_or_the_network() -> None:
    # A review: six throttled looks in a row (past botocore's own three attempts) ended
    # a 45-minute wait at once, with no word that RDS carries on with the change.
    retried: list[str] = []
    fake = Scripted(
        "stopping",
        _aws_error("Throttling"),
        _aws_error("Throttling"),
        _aws_error("InternalFailure", 500),
        _aws_error("Whatever", 503),
        EndpointConnectionError(endpoint_url="https://rds.us-east-1.amazonaws.com"),
        "stopped",
    )
    found = ops.wait_for(
        fake, ID, "stopped", interval=0, on_retry=lambda why, _: retried.append(why)
    )
    assert found is not None and found.state == "stopped"
    assert len(retried) == 5 and retried[0] == "Throttling: Rate exceeded"


def test_wait_gives_up_on_looks_failing_too_long_saying_rds_carries_on(monkeypatch) -> None:
    monkeypatch.setattr(ops, "LOOKS_FAILING_MAX", 0.0)
    with pytest.raises(AwsProblem, match="could not look at") as failed:
        ops.wait_for(Scripted("stopping", _aws_error("Throttling")), ID, "stopped", interval=0)
    assert "RDS carries on" in str(failed.value.hint)
    # An error that another look would not mend ends the wait at once, as it was.
    with pytest.raises(ClientError, match="AccessDenied"):
        ops.wait_for(Scripted("stopping", _aws_error("AccessDenied")), ID, "stopped", interval=0)


def test_an_answer_not_in_awss_format_is_one_line(aws: dict[str, str]) -> None:
    # A review: moto answers a region it does not know with an HTML 500 (as a proxy
    # might): "unexpected ResponseParserError", the page quoted, and a debug hint.
    result = cli("status", "--region", "mars-north-9")
    assert result.exit_code == 1
    assert "is not an AWS answer" in result.stderr and "AWS_ENDPOINT_URL" in result.stderr
    assert "<" not in result.stderr and "unexpected" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--poll-interval", "0"),  # looked at the instance in a tight loop
        ("--poll-interval", "0.001"),
        ("--poll-interval", "nan"),  # a ValueError traceback from time.sleep
        ("--poll-interval", "inf"),
        ("--poll-interval", "1e20"),  # an OverflowError from time.sleep
        ("--poll-interval", "-1"),
        ("--timeout", "nan"),  # `waited >= nan` never held: waited for ever
        ("--timeout", "inf"),
        ("--timeout", "-5"),
    ],
)
@pytest.mark.parametrize("verb", ["create", "stop", "delete"])
def test_wait_options_refuse_what_cannot_be_waited_with(
    aws: dict[str, str], verb: str, option: str, value: str
) -> None:
    make_instance()  # refused while parsing: the instance is never looked at
    result = cli(verb, "--wait", option, value, env=CREDENTIALS)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr
    assert isinstance(result.exception, SystemExit)  # a usage error, not a traceback
    assert describe()["DBInstanceStatus"] == "available"  # nothing was asked of RDS


@pytest.mark.parametrize("identifier", ["", "é", "Bad_ID!", "1db", "a--b", "db-", "d" * 64])
@pytest.mark.parametrize(
    "args",
    [
        ("status", "--identifier"),
        ("create", "--identifier"),
        ("delete", "--skip-final-snapshot", "--identifier"),
        ("stop", "--identifier"),
        ("create-replica", "--replica-identifier"),
        ("promote-replica",),
    ],
)
def test_an_identifier_rds_would_refuse_is_refused_first(
    aws: dict[str, str], args: tuple[str, ...], identifier: str
) -> None:
    # `--identifier ''` reads as no filter to DescribeDBInstances; the others came back
    # from AWS after create had said what it would make.
    make_instance()
    result = cli(*args, identifier, env=CREDENTIALS)
    assert result.exit_code == 2, result.output
    assert f"{identifier!r} is not an RDS instance identifier" in result.stderr
    assert "creating" not in result.stderr


def test_identifiers_rds_takes_are_taken() -> None:
    for identifier in ("a", "cruddur-db-instance", "Cruddur-DB-2", "d" * 63):
        assert ops.identifier_problem(identifier) is None


def test_database_and_api_settings_do_not_stop_the_rds_commands(aws: dict[str, str]) -> None:
    # They read Settings for CRUDDUR_HOME alone (the CA bundle's folder): a malformed
    # pool or log setting failed `rds status` after its table, and `rds create --wait`
    # after the instance was made, with exit status 1.
    unrelated = {"CRUDDUR_POOL_MAX_SIZE": "abc", "CRUDDUR_LOG_LEVEL": "loud", "PORT": "x"}
    created = cli("create", "--wait", "--poll-interval", "1", env={**CREDENTIALS, **unrelated})
    assert created.exit_code == 0, created.stderr
    assert "export PROD_CONNECTION_URL=" in created.output
    status = cli("status", env=unrelated)
    assert status.exit_code == 0, status.stderr
    assert "RDS CA bundle" in status.stderr


# -- secrets, URLs, regions --------------------------------------------------------


def test_no_password_in_any_output_or_log(
    aws: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = {**aws, **CREDENTIALS}
    commands = [
        ("create", "--wait", "--poll-interval", "1"),
        ("create",),
        ("status",),
        ("stop", "--yes", "--wait", "--poll-interval", "1"),
        ("start", "--wait", "--poll-interval", "1"),
        ("allow-my-ip", "--ip", "198.51.100.7"),
        ("delete", "--yes", "--skip-final-snapshot"),
    ]
    outputs = []
    for args in commands:
        done = run(CRUDDUR, "rds", *args, env={**env, "CRUDDUR_DEBUG": "1"})
        assert done.returncode == 0, (args, done.stderr)
        outputs.append(done.stdout + done.stderr)
    # In this process too, with every logger at DEBUG (botocore logs request parameters).
    caplog.set_level(logging.DEBUG)
    for args in (("create", "--wait", "--poll-interval", "1"), ("status",)):
        result = cli(*args, env=CREDENTIALS)
        assert result.exit_code == 0, result.stderr
        outputs.append(result.output + result.stderr)
    joined = "\n".join(outputs)
    assert "cruddurroot:***@" in joined  # the URL was printed, redacted
    assert PASSWORD not in joined
    assert PASSWORD not in caplog.text


def test_the_printed_url_is_one_the_db_commands_accept(aws: dict[str, str]) -> None:
    result = cli("create", "--wait", "--poll-interval", "1", env=CREDENTIALS)
    line = next(
        x for x in result.output.splitlines() if x.startswith("export PROD_CONNECTION_URL=")
    )
    printed = line.split("=", 1)[1].strip('"')
    # As printed, and with the password put in as the hint says (percent-encoded).
    for url in (printed, printed.replace("***", "p%40ss%3Aword")):
        params = parse(url)
        assert params["host"] == describe()["Endpoint"]["Address"]
        assert params["port"] == "5432"
        assert params["dbname"] == "cruddur"
        assert params["user"] == "cruddurroot"
    assert parse(printed.replace("***", "p%40ss%3Aword"))["password"] == "p@ss:word"
    target = resolve(Settings.from_env({"PROD_CONNECTION_URL": printed}), prod=True)
    assert target.prod and target.dbname == "cruddur"
    assert redact(printed) == printed


def test_clients_honour_aws_region(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert client("rds").meta.region_name == "eu-west-1"
    assert client("rds", region_name="ca-central-1").meta.region_name == "ca-central-1"


def test_rds_help_explains_itself() -> None:
    result = run(CRUDDUR, "rds", "--help")
    assert result.returncode == 0
    for verb in ("create", "status", "stop", "start", "delete", "allow-my-ip"):
        assert verb in result.stdout
    create = cli("create", "--help")
    assert "--performance-insights / --no-performance-insights" in create.output
    assert "db.t3.micro" in create.output


def test_a_blank_region_or_a_malformed_endpoint_is_a_one_line_error(aws: dict[str, str]) -> None:
    # `--region ""` and AWS_ENDPOINT_URL=not-a-url were "unexpected ValueError: Invalid
    # endpoint" from botocore.
    blank = cli("status", "--region", "")
    assert "unexpected" not in blank.output and "Invalid endpoint" not in blank.output
    bad = cli("status", env={"AWS_ENDPOINT_URL": "not-a-url"})
    assert bad.exit_code == 1, bad.output
    assert "check AWS_ENDPOINT_URL" in bad.output and "unexpected" not in bad.output
    missing = cli("promote-replica", "no-such-replica", "--yes")
    assert missing.exit_code == 1
    assert "--identifier" not in missing.output  # it takes the identifier as an argument


def _readmes_first_policy() -> str:
    """The IAM policy README.md gives for these commands (its first JSON block after
    "The IAM permissions these commands need")."""
    text = (ROOT / "README.md").read_text()
    after = text.split("The IAM permissions these commands need", 1)[1]
    return after.split("```json\n", 1)[1].split("```", 1)[0]


def readmes_operator(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of an IAM user with exactly the README's policy; from the call on,
    moto checks each request against the caller's policies, as AWS does."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    iam = client("iam")
    iam.create_user(UserName="operator")
    iam.put_user_policy(
        UserName="operator", PolicyName="cruddur", PolicyDocument=_readmes_first_policy()
    )
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    # From here on, moto checks each request against the caller's policies, as AWS does.
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    monkeypatch.delenv("AWS_SESSION_TOKEN")  # the user's own keys, no session's
    return {
        **{k: v for k, v in aws.items() if k != "AWS_SESSION_TOKEN"},
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def test_status_works_with_the_readmes_policy(aws: dict[str, str], monkeypatch) -> None:
    # Status also lists the instance's proxies: with the README's policy (no
    # rds:DescribeDBProxies, which only the scaling-out verbs need) it printed nothing
    # but an AccessDenied.
    created = run(CRUDDUR, "rds", "create", env={**aws, **CREDENTIALS})
    assert created.returncode == 0, created.stderr
    operator = readmes_operator(aws, monkeypatch)
    status = run(CRUDDUR, "rds", "status", env=operator)
    assert status.returncode == 0, status.stderr
    assert f"identifier      {ID}" in status.stdout
    assert "not looked up: this identity lacks rds:DescribeDBProxies" in status.stdout


def test_an_aws_answer_with_nothing_but_its_status_says_so() -> None:
    # A review: a 502 with an empty body read "Unknown: An error occurred (Unknown) when
    # calling the DescribeDBInstances operation" while a wait looked again.
    from cruddur.aws.errors import explain_aws

    bare = ClientError(
        {"Error": {"Code": "Unknown", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 502}},
        "DescribeDBInstances",
    )
    assert explain_aws(bare).message == "AWS answered HTTP 502 without an AWS error in it"
    assert explain_aws(_aws_error("Throttling")).message == "Throttling: Rate exceeded"
