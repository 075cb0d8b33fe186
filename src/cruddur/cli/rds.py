"""`cruddur rds …`: the production PostgreSQL on AWS RDS, and the security group rule
that lets your IP reach it (bin/rds-update-sg-rule)."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import click

from cruddur.aws import rds as ops
from cruddur.aws import security_group as sg
from cruddur.aws.problems import AwsProblem
from cruddur.cli.options import Cli, Seconds, pass_cli
from cruddur.cli.output import confirm_typed, done, err, info, result, warn

SEVEN_DAYS_NOTE = (
    "RDS starts a stopped instance again by itself after 7 days; stop it again then "
    "(or delete it) to keep it off"
)

POLL_INTERVAL_MIN = 1.0  # seconds between looks at an instance while waiting
POLL_INTERVAL_MAX = 3600.0


class Identifier(click.ParamType):
    """An RDS instance identifier, checked here: AWS's own refusal comes only after the
    command has said what it will do, and `rds status --identifier ''` asked about
    every instance."""

    name = "identifier"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        problem = ops.identifier_problem(value)
        if problem:
            self.fail(problem, param, ctx)
        return value


identifier_option = click.option(
    "--identifier",
    type=Identifier(),
    default=ops.DEFAULT_IDENTIFIER,
    show_default=True,
    help="The RDS DB instance identifier.",
)
region_option = click.option(
    "--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION or your profile's)."
)


@dataclass(frozen=True)
class Waiting:
    """--wait, --poll-interval and --timeout: whether and how a command waits for RDS."""

    asked: bool
    poll_interval: float  # seconds
    timeout: float  # minutes


def _wait_options(what: str) -> Any:
    """The three options, handed to the command as one `waiting` argument."""

    def decorate(command: Any) -> Any:
        @functools.wraps(command)
        def with_waiting(
            *args: Any, wait: bool, poll_interval: float, timeout: float, **kw: Any
        ) -> Any:
            return command(*args, waiting=Waiting(wait, poll_interval, timeout), **kw)

        decorated: Any = with_waiting
        for name, default, kind, says in (
            ("--timeout", 45, Seconds(unit="minutes"), "give up waiting after this many minutes"),
            # At least a second: 0 looked at the instance in a tight loop (and AWS throttles
            # DescribeDBInstances); at most an hour, past which time.sleep() overflows.
            (
                "--poll-interval",
                15,
                Seconds(POLL_INTERVAL_MAX, minimum=POLL_INTERVAL_MIN),
                "seconds between looks at the instance (1 to 3600)",
            ),
        ):
            decorated = click.option(
                name,
                type=kind,
                default=default,
                show_default=True,
                help=f"With --wait: {says}.",
            )(decorated)
        return click.option("--wait", is_flag=True, help=f"Wait until {what}.")(decorated)

    return decorate


# boto3 (through cruddur.aws.client and .replicas) and cryptography (through .ca_bundle)
# are imported by the verbs that call AWS: `cruddur rds --help` starts without them.
def _client(service: str, region: str | None) -> Any:
    from cruddur.aws import client

    return client(service, region_name=region)


@click.group()
def rds() -> None:
    """Run Cruddur's production database on AWS RDS.

    Region, profile and credentials come from the usual AWS settings (AWS_REGION,
    AWS_PROFILE, ~/.aws/…). The master user comes from MASTER_USERNAME and
    MASTER_USER_PASSWORD; the password is never printed.
    """
    # botocore logs each request's parameters at DEBUG, the master password among them:
    # keep its loggers quiet whatever the root logger's level.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


# The instance `rds create` asks for when no flag says otherwise: the original's choices.
_DEFAULT = ops.InstanceSpec()


class _Shaped(click.ParamType):
    """Text of a shape RDS takes (`pattern`), checked before anything is said or sent:
    RDS refused the rest only after "creating …" was printed."""

    def __init__(self, name: str, pattern: str, rule: str) -> None:
        self.name, self._pattern, self._rule = name, re.compile(pattern), rule

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, str) or self._pattern.fullmatch(value):
            return value
        self.fail(f"{value!r} is not {self._rule}", param, ctx)


class _InsightsDays(click.ParamType):
    """Performance Insights retention: 7 (free), a number of months (31 days each, 1 to
    23), or 731; RDS refuses any other number of days."""

    name = "days"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            days = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number of days", param, ctx)
        if days in (7, 731) or (days % 31 == 0 and 1 <= days // 31 <= 23):
            return days
        self.fail(f"{days} is not 7, a multiple of 31 up to 713, or 731", param, ctx)


# `rds create`'s options that set an InstanceSpec field: (option, field, help, type).
_SPEC_OPTIONS: tuple[tuple[str, str, str, click.ParamType | None], ...] = (
    (
        "--instance-class",
        "instance_class",
        "The instance's size.",
        _Shaped("class", r"db\.[a-z0-9]+\.[a-z0-9]+", "an instance class such as db.t4g.micro"),
    ),
    (
        "--engine-version",
        "engine_version",
        "PostgreSQL version; a major alone (17) gets RDS's newest minor of it.",
        # Extended Support releases carry a date: 12.22-rds.20250220.
        _Shaped(
            "version",
            r"[0-9]+(\.[0-9]+)*(-[Rr][Dd][Ss]\.[0-9]{8})?",
            "a PostgreSQL version such as 17 or 16.4",
        ),
    ),
    ("--storage", "storage_gb", "GB.", click.IntRange(20, 65536)),
    ("--storage-type", "storage_type", "", click.Choice(ops.STORAGE_TYPES)),
    (
        "--iops",
        "iops",
        "Provisioned IOPS: needed for io1 and io2, optional for gp3 (RDS checks them "
        "against the size).",
        click.IntRange(1000, 256_000),
    ),
    ("--port", "port", "", click.IntRange(1150, 65535)),
    (
        "--db-name",
        "db_name",
        "The database RDS makes.",
        _Shaped(
            "name",
            r"[A-Za-z][A-Za-z0-9_]{0,62}",
            "a database name RDS makes: 1-63 letters, digits and underscores, a letter first",
        ),
    ),
    (
        "--public/--private",
        "public",
        "Reachable from the internet (through the security group), as the original.",
        None,
    ),
    ("--multi-az/--single-az", "multi_az", "", None),
    (
        "--backup-retention",
        "backup_retention_days",
        "Days of automated backups (0: none).",
        click.IntRange(0, 35),
    ),
    ("--performance-insights/--no-performance-insights", "performance_insights", "", None),
    (
        "--performance-insights-days",
        "performance_insights_days",
        "Performance Insights retention: 7 (the free tier), a multiple of 31 up to 713, or 731.",
        _InsightsDays(),
    ),
    ("--deletion-protection/--no-deletion-protection", "deletion_protection", "", None),
    ("--encrypted/--unencrypted", "encrypted", "", None),
)


def _spec_options(command: Any) -> Any:
    """_SPEC_OPTIONS, each defaulting to the spec's own value."""
    for declaration, field, says, kind in reversed(_SPEC_OPTIONS):
        default = getattr(_DEFAULT, field)
        command = click.option(
            declaration, field, default=default, show_default=True, type=kind, help=says or None
        )(command)
    return command


@rds.command()
@identifier_option
@_spec_options
@click.option(
    "--production",
    is_flag=True,
    help="The safe set for real data: private, 7 days of backups, deletion protection, "
    "Multi-AZ (each flag given explicitly still wins). Without it: the original's choices.",
)
@region_option
@_wait_options("the instance is available, then print its endpoint")
@click.pass_context
def create(
    ctx: click.Context,
    production: bool,
    region: str | None,
    waiting: Waiting,
    **fields: Any,
) -> None:
    """Create the PostgreSQL instance (takes 10-15 minutes on AWS).

    The master user is MASTER_USERNAME with the password MASTER_USER_PASSWORD. An
    instance that already exists is left as it is. The defaults are the original's
    (public, no backups, no deletion protection, single-AZ: cheap, for a course);
    --production asks for the safe set.
    """
    spec = ops.InstanceSpec(**fields)
    problem = spec.storage_problem()
    if problem:
        raise click.UsageError(problem)
    credentials = ops.credentials_from_env(os.environ)
    identifier = spec.identifier
    if production:
        # The safe set, except where a flag was given explicitly.
        safe = {
            field: value
            for field, value in ops.PRODUCTION.items()
            if ctx.get_parameter_source(field) != click.core.ParameterSource.COMMANDLINE
        }
        spec = replace(spec, **safe)
    info(f"creating {identifier}: {_describe_spec(spec)}; master user {credentials.username}")
    for meaning in spec.choices():
        info(f"  {meaning}")
    if not production:
        info("  (`--production` asks for the safe set: private, backups, protection, Multi-AZ)")
    rds_client = _client("rds", region)
    instance, created = ops.create(rds_client, spec, credentials)
    if created:
        done(f"RDS accepted {identifier}; it is {instance.state} (10-15 minutes on AWS)")
        if spec.public:
            warn(
                "a publicly accessible instance holds a public IPv4 address, which AWS bills "
                "by the hour; its security group still decides who may connect"
            )
    else:
        warn(f"{identifier} already exists ({instance.state}); left as it is, nothing created")
        if instance.state in ("stopped", "stopping"):
            # Nothing will make it available but a start: --wait polled its whole timeout
            # (45 minutes) and then said RDS was still working on it.
            info(f"it is {instance.state}: `cruddur rds start --wait` makes it available")
            return
    follow = "follow it with `cruddur rds status`, or wait with `cruddur rds create --wait`"
    available = _available(rds_client, instance, waiting, follow)
    if available is not None:
        _print_connection(available)


def _describe_spec(spec: ops.InstanceSpec) -> str:
    insights = (
        f"Performance Insights {spec.performance_insights_days} days"
        if spec.performance_insights
        else "no Performance Insights"
    )
    return ", ".join(
        [
            spec.instance_class,
            f"{ops.ENGINE} {spec.engine_version}",
            f"{spec.storage_gb} GB {spec.storage_type}"
            + (f" {spec.iops:,} IOPS" if spec.iops is not None else ""),
            "encrypted" if spec.encrypted else "unencrypted",
            "public" if spec.public else "private",
            "multi-AZ" if spec.multi_az else "single-AZ",
            f"backups {spec.backup_retention_days} days",
            insights,
            "deletion protection" if spec.deletion_protection else "no deletion protection",
            f"port {spec.port}",
            f"database {spec.db_name}",
        ]
    )


def _print_connection(instance: ops.Instance) -> None:
    url = instance.connection_url()
    if url is None:
        info("no endpoint yet; RDS gives one when the instance is available")
        return
    result(f"endpoint  {instance.endpoint}:{instance.port}")
    result(f'export PROD_CONNECTION_URL="{url}"')
    info(
        "replace *** with the master password ($MASTER_USER_PASSWORD; percent-encode any "
        ": ? # [ ] % in it), then `bin/rds-update-sg-rule` to let your IP in"
    )
    info(_tls_note())


def _tls_note() -> str:
    from cruddur.aws.ca_bundle import bundle_path

    home = click.get_current_context().ensure_object(Cli).home
    bundle = bundle_path(home, os.environ, fetch=False)
    # Not fetched yet (it is on first use): psql given the path failed on a missing file.
    first = "" if bundle.is_file() else " (run `cruddur rds ca-bundle` first: it fetches it)"
    return (
        "sslmode=verify-full: the server must prove, with a certificate from the RDS CA "
        f"bundle ({bundle}; `cruddur rds ca-bundle` says where it comes from), that it is "
        "this instance. Cruddur adds the bundle itself; for psql or another client add "
        f"&sslrootcert={bundle}{first}"
    )


_FAILED_LOOK = "(a failed look)"  # in _wait's states seen: not a state RDS has


def _wait(rds_client: Any, identifier: str, state: str | None, waiting: Waiting) -> Any:
    goal = state or "deleted"
    seen: list[str | None] = []

    with err().status(f"{identifier}: waiting until {goal}") as status:

        def on_poll(current: str | None, waited: float) -> None:
            shown = current or "deleted"
            status.update(f"{identifier}: {shown} after {_clock(waited)}, waiting until {goal}")
            if not seen or seen[-1] != current:  # a line per change, for logs and pipes
                info(f"{_clock(waited)}  {identifier}: {shown}")
                seen.append(current)

        def on_retry(why: str, waited: float) -> None:
            status.update(f"{identifier}: could not look after {_clock(waited)} ({why})")
            if not seen or seen[-1] != _FAILED_LOOK:  # a line per run of failed looks
                info(f"{_clock(waited)}  could not look at {identifier} ({why}); trying again")
                seen.append(_FAILED_LOOK)

        try:
            instance = ops.wait_for(
                rds_client,
                identifier,
                state,
                interval=waiting.poll_interval,
                timeout=waiting.timeout * 60,
                on_poll=on_poll,
                on_retry=on_retry,
            )
        except KeyboardInterrupt:
            status.stop()
            warn("stopped waiting; RDS carries on (`cruddur rds status` to look again)")
            raise click.exceptions.Exit(130) from None
    done(f"{identifier} is {goal}")
    return instance


def _available(
    rds_client: Any, instance: ops.Instance, waiting: Waiting, follow: str
) -> ops.Instance | None:
    """The instance once available: waited for with --wait; else as it is if it already
    is, or None after saying how to follow it."""
    if waiting.asked:
        return _wait(rds_client, instance.identifier, "available", waiting)
    if instance.state != "available":
        info(follow)
        return None
    return instance


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:d}:{secs:02d}"


@rds.command()
@identifier_option
@region_option
def status(identifier: str, region: str | None) -> None:
    """Show the instance: state, class, version, endpoint, access and security groups,
    and its read replicas (with their lag) and proxies."""
    rds_client = _client("rds", region)
    instance = ops.require(rds_client, identifier)
    groups = ", ".join(f"{group} ({state})" for group, state in instance.security_groups)
    rows = [
        ("identifier", instance.identifier),
        ("state", instance.state),
        ("class", instance.instance_class),
        ("engine", f"{instance.engine} {instance.engine_version}"),
        ("endpoint", instance.endpoint or "(none yet)"),
        ("port", str(instance.port or "")),
        ("public", "yes" if instance.public else "no"),
        ("security groups", groups or "(none)"),
        ("database", instance.db_name or ""),
        ("master user", instance.master_username),
    ]
    url = instance.connection_url()
    if url:
        rows.append(("url", url))
    if instance.replica_source:
        rows.append(("replica of", instance.replica_source))
    cloudwatch = _client("cloudwatch", region) if instance.read_replicas else None
    for replica_id in instance.read_replicas:
        replica = ops.describe(rds_client, replica_id)
        shown = _lag_if_allowed(cloudwatch, replica_id)
        rows.append(("replica", f"{replica_id} ({replica.state if replica else 'gone'}, {shown})"))
        if replica is not None and replica.connection_url():
            rows.append(("  reader url", replica.connection_url()))
    for proxy in _proxies_if_allowed(rds_client, identifier, rows):
        tls = "TLS required" if proxy.require_tls else "TLS optional"
        rows.append(("proxy", f"{proxy.name} ({proxy.status}, {tls})"))
        if proxy.connection_url(instance):
            rows.append(("  proxy url", proxy.connection_url(instance)))
    for key, value in rows:
        result(f"{key:<16}{value}")
    if url:
        info(_tls_note())
    if instance.state == "stopped":
        info(SEVEN_DAYS_NOTE)


def _power_command(waits_until: str) -> Any:
    """`rds stop` and `rds start`: one instance, and the wait options."""

    def decorate(command: Any) -> Any:
        for option in (_wait_options(waits_until), region_option, identifier_option):
            command = option(command)
        return rds.command()(command)

    return decorate


@_power_command("the instance has stopped")
@click.option("--yes", "-y", is_flag=True, help="Skip typing the identifier to confirm.")
def stop(identifier: str, yes: bool, region: str | None, waiting: Waiting) -> None:
    """Stop the instance to save cost (storage is still billed). Everything that uses
    the database fails until `rds start`. Asks you to type the identifier unless --yes."""
    if not yes:
        # Only an available instance is stopped: one already stopped (or stopping) is
        # left as it is, and one in another state is refused, so neither needs asking.
        instance = ops.require(_client("rds", region), identifier)
        if instance.state == "available":
            about = (
                f"STOP the RDS instance {identifier}: every request that needs the "
                "database fails until `cruddur rds start`"
            )
            confirm_typed(identifier, "the identifier", about, to_do="stop it", nothing="stopped")
    _switch(ops.stop, "stopping", "stopped", identifier, region, waiting)
    warn(SEVEN_DAYS_NOTE)


@_power_command("the instance is available")
def start(identifier: str, region: str | None, waiting: Waiting) -> None:
    """Start a stopped instance."""
    instance = _switch(ops.start, "starting", "available", identifier, region, waiting)
    if instance is not None:
        _print_connection(instance)
    info("your IP may have changed since: `bin/rds-update-sg-rule` lets the current one in")


def _switch(
    change: Any, doing: str, state: str, identifier: str, region: str | None, waiting: Waiting
) -> ops.Instance | None:
    """Ask RDS for the change and say what it did; with --wait, the instance once in `state`."""
    rds_client = _client("rds", region)
    instance, changed = change(rds_client, identifier)
    if changed:
        done(f"{doing} {identifier}")
    else:
        done(f"{identifier} is already {instance.state}; nothing to do")
    return _wait(rds_client, identifier, state, waiting) if waiting.asked else None


@rds.command()
@identifier_option
@click.option("--final-snapshot", metavar="NAME", help="Keep a final snapshot by this name.")
@click.option(
    "--skip-final-snapshot", is_flag=True, help="Delete without a final snapshot: data is gone."
)
@click.option(
    "--orphan-replicas",
    is_flag=True,
    help="Delete a primary that has read replicas; they become standalone instances.",
)
@click.option("--yes", "-y", is_flag=True, help="Skip typing the identifier to confirm.")
@region_option
@_wait_options("the instance is gone")
def delete(
    identifier: str,
    final_snapshot: str | None,
    skip_final_snapshot: bool,
    orphan_replicas: bool,
    yes: bool,
    region: str | None,
    waiting: Waiting,
) -> None:
    """Delete the instance. Say what happens to its data: --final-snapshot NAME or
    --skip-final-snapshot. Asks you to type the identifier unless --yes."""
    if bool(final_snapshot) == skip_final_snapshot:
        raise AwsProblem(
            "say what happens to the data: --final-snapshot NAME or --skip-final-snapshot"
            + (" (not both)" if skip_final_snapshot else ""),
            "a final snapshot keeps the data (and is billed) until you delete the snapshot",
        )
    problem = ops.snapshot_name_problem(final_snapshot) if final_snapshot else None
    if problem:
        raise AwsProblem(problem, "e.g. --final-snapshot cruddur-final-2025-01-31")
    rds_client = _client("rds", region)
    instance = ops.require(rds_client, identifier)
    if instance.deletion_protection:
        raise AwsProblem(
            f"{identifier} has deletion protection on",
            f"turn it off first: aws rds modify-db-instance --db-instance-identifier "
            f"{identifier} --no-deletion-protection --apply-immediately",
        )
    if instance.read_replicas and not orphan_replicas:
        raise AwsProblem(
            f"{identifier} still has read replicas: {', '.join(instance.read_replicas)}",
            "delete them first (`cruddur rds delete --identifier REPLICA …`), or pass "
            "--orphan-replicas: RDS then makes each a standalone instance, still running "
            "and billed",
        )
    keep = f"a final snapshot {final_snapshot}" if final_snapshot else "NO final snapshot"
    if instance.read_replicas:
        warn(f"its replicas {', '.join(instance.read_replicas)} become standalone instances")
    if not yes:
        about = f"DELETE the RDS instance {identifier} ({instance.state}), with {keep}"
        confirm_typed(identifier, "the identifier", about, to_do="delete it", nothing="deleted")
    ops.delete(rds_client, identifier, final_snapshot=final_snapshot)
    done(f"deleting {identifier}, with {keep}")
    if waiting.asked:
        _wait(rds_client, identifier, None, waiting)


@rds.command("allow-my-ip")
@click.option(
    "--ip",
    metavar="ADDRESS",
    help="The IPv4 address to admit (default: GITPOD_IP, else looked up at checkip.amazonaws.com).",
)
@click.option(
    "--group-id",
    envvar="DB_SG_ID",
    show_envvar=True,
    help="The security group (default: the instance's own).",
)
@click.option(
    "--rule-id",
    envvar="DB_SG_RULE_ID",
    show_envvar=True,
    help="The inbound rule to update; it must carry --description (default: the group's "
    "rule with --description, created when missing).",
)
@click.option(
    "--description",
    default=sg.DEFAULT_DESCRIPTION,
    show_default=True,
    callback=lambda _ctx, _param, value: _not_blank(value),
    help="The rule's description, by which it is found.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="The port to admit [default: the instance's; 5432 when it cannot be looked up].",
)
@identifier_option
@region_option
def allow_my_ip(
    ip: str | None,
    group_id: str | None,
    rule_id: str | None,
    description: str,
    port: int | None,
    identifier: str,
    region: str | None,
) -> None:
    """Let your current public IP reach the database: TCP on its port from IP/32.

    Updates the rule DB_SG_RULE_ID in the group DB_SG_ID; without a rule id it finds the
    group's rule by its description, or creates one. Prints `export` lines for the ids,
    so `eval "$(bin/rds-update-sg-rule)"` keeps them in your shell.
    """
    address, source = sg.my_ip(ip, os.environ)
    info(f"your IP: {address} (from {source})")
    if not group_id and not rule_id:
        group_id, instance_port = sg.instance_group(_client("rds", region), identifier)
        info(f"security group {group_id} of {identifier}")
        # An instance made with `rds create --port 5433` listens there, not on 5432.
        port = port or instance_port
    elif port is None:
        # The ids kept from the last run (DB_SG_ID, DB_SG_RULE_ID) say nothing of the port:
        # 5432 opened a useless rule, or refused the instance's own, for an instance on
        # another port. Asked of the instance; 5432 when it cannot be (another instance's
        # group, no rds:DescribeDBInstances).
        port = _instance_port(region, identifier)
    port = port or sg.POSTGRES_PORT
    outcome = sg.allow_ip(
        _client("ec2", region),
        ip=address,
        group_id=group_id,
        rule_id=rule_id,
        description=description,
        port=port,
    )
    rule = outcome.rule
    where = f"rule {rule.id} in {rule.group_id}"
    if outcome.action == "unchanged":
        done(f"{where} already admits {rule.cidr} on port {port}; nothing to change")
    elif outcome.action == "created":
        done(f"created {where}: {rule.cidr} on port {port} ({description})")
    else:
        done(f"updated {where}: {outcome.previous_cidr} → {rule.cidr} on port {port}")
    kept = outcome.keep
    result(f"export DB_SG_ID={rule.group_id}")
    if kept is not None:
        result(f"export DB_SG_RULE_ID={kept.id}")
    else:
        # Another's rule admits the IP: its id, kept, had the next run rewrite it.
        shown = repr(rule.description) if rule.description else "nothing"
        info(
            f"no DB_SG_RULE_ID printed: rule {rule.id} is described {shown}, not "
            f"{description!r}, so it is someone else's"
            + ("; unset DB_SG_RULE_ID" if rule_id else "")
            + f"; the next run finds the {description!r} rule or creates one"
        )
    if (kept.id if kept else rule_id, rule.group_id) != (rule_id, group_id):
        info("keep these ids for next time: add the export lines above to your shell's profile")


def _not_blank(description: str) -> str:
    """A blank description finds the rules that have none, made by hand in the console:
    one of those, someone else's, was rewritten to your IP."""
    if not description.strip():
        raise click.BadParameter(
            "must not be blank: rules without a description are someone else's"
        )
    return description


def _proxies_if_allowed(rds_client: Any, identifier: str, rows: list[tuple[str, str]]) -> list:
    """The instance's proxies; for an identity the first policy made (the README's, without
    rds:DescribeDBProxies, which only the scaling-out verbs need), a row saying so, not an
    AccessDenied in place of the whole status."""
    from botocore.exceptions import ClientError

    from cruddur.aws import replicas
    from cruddur.aws.errors import permission_denied

    try:
        return replicas.proxies_for(rds_client, identifier)
    except ClientError as exc:
        if not permission_denied(exc):
            raise
        rows.append(("proxy", "not looked up: this identity lacks rds:DescribeDBProxies"))
        return []


def _lag_if_allowed(cloudwatch: Any, replica_id: str) -> str:
    """How far the replica is behind, for its row; for an identity without
    cloudwatch:GetMetricStatistics (the README's policy) the row says so, in place of an
    AccessDenied for the whole status."""
    from botocore.exceptions import ClientError

    from cruddur.aws import replicas
    from cruddur.aws.errors import permission_denied

    try:
        lag = replicas.replica_lag_seconds(cloudwatch, replica_id)
    except ClientError as exc:
        if not permission_denied(exc):
            raise
        return "lag not looked up: this identity lacks cloudwatch:GetMetricStatistics"
    return "lag not reported yet" if lag is None else f"{lag:g} s behind"


def _instance_port(region: str | None, identifier: str) -> int | None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _, instance_port = sg.instance_group(_client("rds", region), identifier)
    except (AwsProblem, ClientError, BotoCoreError):
        return None
    if instance_port != sg.POSTGRES_PORT:
        info(f"port {instance_port}, {identifier}'s")
    return instance_port


# -- scaling out: read replicas and RDS Proxy ---------------------------------------------


@rds.command("create-replica")
@identifier_option
@click.option(
    "--replica-identifier",
    type=Identifier(),
    help="The replica's identifier [default: IDENTIFIER-replica-1].",
)
@click.option("--instance-class", help="The replica's class [default: the primary's].")
@region_option
@_wait_options("the replica is available, then print the reader URL")
def create_replica(
    identifier: str,
    replica_identifier: str | None,
    instance_class: str | None,
    region: str | None,
    waiting: Waiting,
) -> None:
    """Create a read replica of the instance (RDS streams the primary's changes to it).

    Point READER_CONNECTION_URL at it and the API reads from it while it keeps up
    (README, "Scaling out"). The primary must keep automated backups.
    """
    from cruddur.aws import replicas

    if replica_identifier is None:
        # Made here, so checked here as a typed one is: a long instance name made one
        # RDS refuses (moto took it, and then `rds status` could not name it).
        replica_identifier = f"{identifier}-replica-1"
        if problem := ops.identifier_problem(replica_identifier):
            raise click.UsageError(
                f"the replica's name would be {problem}: give --replica-identifier"
            )
    rds_client = _client("rds", region)
    replica, created = replicas.create_replica(
        rds_client, identifier, replica_identifier, instance_class=instance_class
    )
    if created:
        done(f"RDS accepted {replica_identifier}, a replica of {identifier}; it is {replica.state}")
    else:
        warn(f"{replica_identifier} already exists ({replica.state}); left as it is")
    available = _available(
        rds_client, replica, waiting, "follow it with `cruddur rds status`, or add --wait"
    )
    url = available.connection_url() if available else None
    if url:
        result(f'export READER_CONNECTION_URL="{url}"')
        info("replace *** with the password of the user in it, as for PROD_CONNECTION_URL")


@rds.command("promote-replica")
@click.argument("replica_identifier", type=Identifier())
@click.option("--yes", "-y", is_flag=True, help="Skip typing the identifier to confirm.")
@region_option
@_wait_options("the promoted instance is available")
def promote_replica(
    replica_identifier: str,
    yes: bool,
    region: str | None,
    waiting: Waiting,
) -> None:
    """Promote a read replica to a standalone instance that takes writes.

    It stops following its primary for good: point CONNECTION_URL at it (a failover by
    hand, or a copy to keep). Asks you to type the identifier unless --yes.
    """
    from cruddur.aws import replicas

    rds_client = _client("rds", region)
    replica = ops.require(rds_client, replica_identifier)
    if not yes and replica.replica_source is not None:
        about = (
            f"PROMOTE {replica_identifier}: it stops following {replica.replica_source} and "
            "takes writes of its own, for good"
        )
        confirm_typed(
            replica_identifier, "the identifier", about, to_do="promote it", nothing="promoted"
        )
    replicas.promote_replica(rds_client, replica_identifier)
    done(f"promoting {replica_identifier}")
    if waiting.asked:
        _print_connection(_wait(rds_client, replica_identifier, "available", waiting))


@rds.command("create-proxy")
@identifier_option
@click.option("--name", help="The proxy's name [default: IDENTIFIER-proxy].")
@click.option(
    "--secret-arn",
    help="A Secrets Manager secret (username, password) for the proxy to log in with "
    "[default: make one from MASTER_USERNAME and MASTER_USER_PASSWORD].",
)
@click.option(
    "--subnet-id",
    "subnet_ids",
    multiple=True,
    help="A subnet for the proxy, twice or more [default: the instance's subnet group's].",
)
@click.option(
    "--security-group-id",
    "security_group_ids",
    multiple=True,
    help="A security group for the proxy [default: the instance's].",
)
@region_option
def create_proxy(
    identifier: str,
    name: str | None,
    secret_arn: str | None,
    subnet_ids: tuple[str, ...],
    security_group_ids: tuple[str, ...],
    region: str | None,
) -> None:
    """Put an RDS Proxy in front of the instance: API workers and Lambdas share its pool.

    Makes (when missing) the master user's secret, an IAM role that may read only that
    secret, the proxy (TLS required) and its target, the instance. Point CONNECTION_URL
    at the proxy's endpoint; the API then keeps no prepared statements (README,
    "Scaling out"). Migrations need the instance's own endpoint.
    """
    from cruddur.aws import replicas
    from cruddur.rds_tls import proxy_roots

    roots = proxy_roots()  # a bad CRUDDUR_RDS_PROXY_CA_BUNDLE stops it before AWS is asked
    given = name is not None  # --name '' is a name, and refused as one
    name = name if given else f"{identifier}-proxy"
    if problem := replicas.proxy_name_problem(name):
        raise click.UsageError(
            problem if given else f"{problem} (the default, IDENTIFIER-proxy): give --name"
        )
    rds_client = _client("rds", region)
    instance = ops.require(rds_client, identifier)
    subnets = subnet_ids or instance.subnet_ids
    if len(subnets) < 2:
        raise AwsProblem(
            f"{identifier} has no subnet group with two or more subnets to put the proxy in",
            "give two subnets of its VPC in different zones: --subnet-id … --subnet-id …",
        )
    groups = security_group_ids or tuple(group for group, _ in instance.security_groups)
    found = replicas.existing_proxy(rds_client, name, identifier)
    if found is not None:
        # Its secret and role are left as they are: a --secret-arn given now had the
        # role rewritten to read another secret than the one the proxy logs in with.
        proxy, outcome = found
        if outcome == "target registered":
            done(
                f"the proxy {name} existed without a target: {identifier} registered as its target"
            )
        else:
            warn(f"the proxy {name} already exists ({proxy.status}); left as it is")
    else:
        proxy = _new_proxy(rds_client, region, name, instance, secret_arn, tuple(subnets), groups)
        done(f"RDS accepted the proxy {name} for {identifier}; it is {proxy.status}")
    url = proxy.connection_url(instance)
    if url:
        result(f'export CONNECTION_URL="{url}"')
        info(
            "sslmode=verify-full: the proxy's certificate (from AWS Certificate Manager) "
            f"must chain to Amazon's roots ({roots}), not to the RDS CA bundle. Cruddur "
            f"adds them itself; for psql or another client add &sslrootcert={roots}"
        )
    info(
        "RDS Proxy's read-only endpoints exist for Aurora only: with an RDS replica, "
        "point READER_CONNECTION_URL at the replica itself"
    )


def _new_proxy(
    rds_client: Any,
    region: str | None,
    name: str,
    instance: ops.Instance,
    secret_arn: str | None,
    subnets: tuple[str, ...],
    groups: tuple[str, ...],
) -> Any:
    """The master user's secret (unless given), the role that may read it, the proxy."""
    from cruddur.aws import replicas

    # What this run makes, undone if the proxy is then not made (a subnet RDS refuses,
    # say): each failed run had left another copy of the master password in a secret.
    undo: list[tuple[str, Callable[[], None]]] = []
    if not secret_arn:
        credentials = ops.credentials_from_env(os.environ, for_proxy=True)
        secrets = _client("secretsmanager", region)
        secret_arn, made = replicas.master_secret(
            secrets, f"{instance.identifier}-master", instance, credentials
        )
        if made:
            made_arn = secret_arn
            undo.append(("the secret", lambda: replicas.delete_secret(secrets, made_arn)))
        info(f"secret: {secret_arn} (the master user, for the proxy)")
    iam, role_name = _client("iam", region), replicas.proxy_role_name(name)
    role_arn, made = replicas.proxy_role(iam, role_name, secret_arn)
    if made:
        undo.append(("the role", lambda: replicas.delete_role(iam, role_name)))
    info(f"role: {role_arn} (may read that secret, nothing else)")
    spec = replicas.ProxySpec(name, instance, secret_arn, role_arn, subnets, groups)
    try:
        return replicas.create_proxy(rds_client, spec)
    except Exception:
        if undo and not replicas.proxy_exists(rds_client, name):
            _undo(undo)
        raise


def _undo(steps: list[tuple[str, Callable[[], None]]]) -> None:
    """Remove what a failed create-proxy made, last first, saying what went."""
    removed = []
    for what, step in reversed(steps):
        try:
            step()
        except Exception as exc:  # the error that stopped the run is the one to report
            warn(f"could not remove {what} this run made: {exc}")
        else:
            removed.append(what)
    if removed:
        info(f"removed {' and '.join(removed)} this run made (no proxy was made)")


@rds.command("ca-bundle")
@click.option(
    "--refresh", is_flag=True, help="Fetch AWS's current bundle again (it adds CAs now and then)."
)
@pass_cli
def ca_bundle(cli: Cli, refresh: bool) -> None:
    """Show the RDS CA bundle that every connection to RDS is verified with.

    AWS publishes it as global-bundle.pem on its RDS trust store; no maintained package
    carries a current copy, so cruddur fetches it on first use (HTTPS), checks it (PEM,
    each an Amazon RDS CA, one valid today) and keeps it under CRUDDUR_HOME/tls.
    CRUDDUR_RDS_CA_BUNDLE names a copy of your own instead.
    """
    from cruddur.aws import ca_bundle as bundles
    from cruddur.rds_tls import proxy_roots

    home = cli.home
    if refresh:
        if os.environ.get(bundles.BUNDLE_SETTING, "").strip():
            warn(f"{bundles.BUNDLE_SETTING} is set: that copy is used, not the one fetched")
        bundles.refresh(home)
        done(f"fetched {bundles.GLOBAL_BUNDLE_URL}")
    found = bundles.describe(home, os.environ)
    result(f"{'path':<16}{found.path}")
    result(f"{'source':<16}{found.source}")
    if found.fetched_at:
        result(f"{'fetched':<16}{found.fetched_at}")
    result(f"{'certificates':<16}{found.certificates}")
    result(f"{'valid until':<16}{found.valid_until:%Y-%m-%d} (the last of its CAs to expire)")
    result(f"{'sha256':<16}{found.sha256}")
    # RDS Proxy endpoints are verified with these instead (cruddur.rds_tls).
    result(f"{'proxy roots':<16}{proxy_roots()}")
