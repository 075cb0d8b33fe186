"""deploy/*.yaml: valid for cfn-lint, and in step with the package (the purge's own
template: test_purge_lambda.py)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
from cfnlint.decode import decode
from helpers import ROOT, run

from cruddur.config import ConfigError, ReplicaSettings, TelemetrySettings
from cruddur.ops.packaging import HANDLER, default_output

TEMPLATE = ROOT / "deploy/post-confirmation.yaml"
CFN_LINT = ROOT / ".venv/bin/cfn-lint"


TEMPLATES = ("post-confirmation.yaml", "purge-expired.yaml", "ecs-service.yaml")


@pytest.fixture(scope="module")
def lint_findings(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[str]]:
    """cfn-lint's findings for each template ("as is") and for a copy of it with one
    mistake ("broken"), from one cfn-lint run: its start-up is most of its time."""
    folder = tmp_path_factory.mktemp("broken")
    paths = {}
    for name in TEMPLATES:
        text = (ROOT / "deploy" / name).read_text()
        assert "RetentionInDays: 30" in text
        (folder / name).write_text(text.replace("RetentionInDays: 30", "RetentionInDays: 31"))
        paths[str(ROOT / "deploy" / name)] = (name, "as is")
        paths[str(folder / name)] = (name, "broken")
    linted = run(CFN_LINT, "--format", "json", *paths)
    # cfn-lint's status is a bit set of what it found (2 errors, 4 warnings, 8 notes);
    # 1 is its own failure.
    assert linted.returncode & 1 == 0, linted.stdout + linted.stderr
    findings: dict[tuple[str, str], list[str]] = {key: [] for key in paths.values()}
    for match in json.loads(linted.stdout):
        findings[paths[match["Filename"]]].append(f"{match['Rule']['Id']}: {match['Message']}")
    return findings


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_template_passes_cfn_lint(name: str, lint_findings) -> None:
    assert lint_findings[name, "as is"] == []
    # The same run does catch a mistake in this template (so the pass above means something).
    assert lint_findings[name, "broken"]


def test_the_template_deploys_what_the_package_builds() -> None:
    template, problems = decode(str(TEMPLATE))
    assert not problems
    resources = template["Resources"]
    function = resources["Function"]["Properties"]
    assert function["Handler"] == HANDLER
    assert function["Runtime"] == "python3.12"
    assert (TEMPLATE.parent / function["CodeUri"]).resolve() == default_output().resolve()
    assert function["Timeout"] <= 5  # Cognito waits 5 s for a trigger
    assert set(template["Parameters"]["Architecture"]["AllowedValues"]) == {"x86_64", "arm64"}

    role = resources["FunctionRole"]["Properties"]
    assert "secretsmanager:GetSecretValue" in str(role["Policies"])
    assert_own_logs_only(role)

    ingress = resources["DatabaseIngressFromFunction"]["Properties"]
    port = {"Ref": "DatabasePort"}
    assert (ingress["FromPort"], ingress["ToPort"], ingress["IpProtocol"]) == (port, port, "tcp")

    permission = resources["CognitoInvokePermission"]["Properties"]
    assert permission["Principal"] == "cognito-idp.amazonaws.com"
    assert "userpool/${UserPoolId}" in str(permission["SourceArn"])


@pytest.mark.parametrize("name", ["post-confirmation.yaml", "purge-expired.yaml"])
def test_the_functions_reach_the_port_the_database_listens_on(name: str) -> None:
    # Both rules said 5432: an instance made with `rds create --port 5433` was never reached.
    template, problems = decode(str(ROOT / "deploy" / name))
    assert not problems
    parameter = template["Parameters"]["DatabasePort"]
    assert (parameter["Type"], parameter["Default"]) == ("Number", 5432)
    resources = template["Resources"]
    (egress,) = [
        rule
        for rule in resources["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
        if "DestinationSecurityGroupId" in rule
    ]
    ingress = resources["DatabaseIngressFromFunction"]["Properties"]
    for rule in (egress, ingress):
        assert rule["FromPort"] == rule["ToPort"] == {"Ref": "DatabasePort"}


# -- the API on ECS Fargate ---------------------------------------------------------------

ECS_TEMPLATE = ROOT / "deploy/ecs-service.yaml"


def test_the_service_runs_two_tasks_or_more_behind_the_load_balancer() -> None:
    template, problems = decode(str(ECS_TEMPLATE))
    assert not problems
    parameters, resources = template["Parameters"], template["Resources"]
    assert parameters["MinTasks"]["MinValue"] >= 2 and parameters["MinTasks"]["Default"] >= 2
    network = resources["Service"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == {"Ref": "PrivateSubnetIds"}
    assert network["AssignPublicIp"] == "DISABLED"
    assert "two" in parameters["PrivateSubnetIds"]["Description"].lower()

    health = resources["TargetGroup"]["Properties"]
    assert health["HealthCheckPath"] == "/api/health" and health["Port"] == 4567

    policies = {
        r["Properties"]["TargetTrackingScalingPolicyConfiguration"][
            "PredefinedMetricSpecification"
        ]["PredefinedMetricType"]
        for r in resources.values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
    }
    assert policies == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


@pytest.mark.parametrize("traces", ["off", "otlp", "xray"])
def test_settings_come_from_secrets_and_parameters_never_plain_values(traces: str) -> None:
    template = resolved_ecs_template(
        Traces=traces, TracesEndpoint="https://api.honeycomb.io", TracesHeadersSecretArn=HEADERS
    )  # fmt: skip
    resources = template["Resources"]
    for name in ("ApiTaskDefinition", "MigrateTaskDefinition"):
        for container in resources[name]["Properties"]["ContainerDefinitions"]:
            plain = {item["Name"] for item in container.get("Environment", [])}
            assert not plain & {"OTEL_EXPORTER_OTLP_HEADERS"}  # a tracing back end's key
            if container["Name"] == "otel-collector":
                continue
            assert not plain & {"CONNECTION_URL", "PROD_CONNECTION_URL", "MASTER_USER_PASSWORD"}
            assert "CONNECTION_URL" in {item["Name"] for item in container["Secrets"]}
            assert container["LogConfiguration"]["LogDriver"] == "awslogs"
            # PID 1 ignored a SIGTERM sent before granian's handler was in.
            assert container["LinuxParameters"]["InitProcessEnabled"] is True
    api = resources["ApiTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    secret_names = {item["Name"] for item in api["Secrets"]}
    assert {"AWS_COGNITO_USER_POOL_ID", "AWS_COGNITO_USER_POOL_CLIENT_ID"} <= secret_names
    assert "cruddur.healthcheck" in " ".join(api["HealthCheck"]["Command"])


def test_the_migration_runs_before_the_service_updates() -> None:
    template, _ = decode(str(ECS_TEMPLATE))
    resources = template["Resources"]
    migrate = resources["MigrateTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert migrate["Command"][:2] == ["db", "migrate"]
    assert "Migration" in resources["Service"]["DependsOn"]
    # And not before the tasks may reach the database; the service not before the
    # listener that forwards to its target group (HTTPS, with a certificate).
    assert resources["Migration"]["DependsOn"] == "DatabaseIngressFromTasks"
    assert "ListenersReady" in resources["Service"]["DependsOn"]
    ready = resources["ListenersReady"]["Metadata"]
    assert ready["Http"] == {"Ref": "HttpListener"}
    assert ready["Https"]["Fn::If"][:2] == ["UseHttps", {"Ref": "HttpsListener"}]
    assert resources["Migration"]["Properties"]["TaskDefinition"] == {
        "Ref": "MigrateTaskDefinition"
    }


def test_only_the_tasks_reach_the_database_and_only_the_balancer_reaches_the_tasks() -> None:
    template, _ = decode(str(ECS_TEMPLATE))
    resources = template["Resources"]
    ingress = resources["DatabaseIngressFromTasks"]["Properties"]
    assert ingress["SourceSecurityGroupId"] == {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}
    port = {"Ref": "DatabasePort"}  # it said 5432: `rds create --port 5433` was never reached
    assert (ingress["FromPort"], ingress["ToPort"], ingress["IpProtocol"]) == (port, port, "tcp")
    parameter = template["Parameters"]["DatabasePort"]
    assert (parameter["Type"], parameter["Default"]) == ("Number", 5432)
    (task_rule,) = resources["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert task_rule["SourceSecurityGroupId"] == {
        "Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]
    }
    assert "CidrIp" not in task_rule
    # The balancer sends to the tasks alone (AWS's default egress is everything, anywhere).
    (placeholder,) = resources["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert placeholder["CidrIp"] == "127.0.0.1/32"
    egress = resources["LoadBalancerToTasks"]["Properties"]
    assert egress["DestinationSecurityGroupId"] == {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]}
    assert (egress["FromPort"], egress["ToPort"], egress["IpProtocol"]) == (4567, 4567, "tcp")


# -- compose.yaml ---------------------------------------------------------------------------


def test_compose_starts_the_api_after_a_healthy_database_and_a_finished_migration() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    api = services["api"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "cruddur.healthcheck" in " ".join(api["healthcheck"]["test"])
    assert "pg_isready" in services["db"]["healthcheck"]["test"]
    # The jobs as the owner; the API as its own role, from the file the migrate job writes.
    migrate = services["migrate"]
    # The owner's password beside the URL (PGPASSWORD), so any password works.
    assert migrate["environment"]["CONNECTION_URL"] == "postgresql://postgres@db:5432/cruddur"
    assert migrate["environment"]["PGPASSWORD"] == "${POSTGRES_PASSWORD:-password}"
    assert "db migrate" in " ".join(migrate["command"])
    assert "db roles --env-file /home/cruddur/roles/" in " ".join(migrate["command"])
    assert not {"CONNECTION_URL", "CRUDDUR_API_CONNECTION_URL"} & set(api["environment"])
    assert "POSTGRES_PASSWORD" not in json.dumps(api["environment"])
    assert api["volumes"] == ["roles:/home/cruddur/roles:ro"]
    assert "export CRUDDUR_API_CONNECTION_URL" in " ".join(api["command"])
    assert " ".join(api["command"]).endswith("&& exec cruddur serve")
    # PID 1 ignored a SIGTERM sent before granian's handler was in.
    assert all(services[name]["init"] is True for name in ("api", "migrate", "seed"))
    assert services["seed"]["profiles"] == ["seed"]


def test_only_the_migration_task_can_be_given_the_owners_secret() -> None:
    # The API's execution role reads the API's settings alone: a task definition that
    # used it could never be handed the owner's (migration) credentials.
    template, _ = decode(str(ECS_TEMPLATE))
    resources = template["Resources"]

    def readable(role: str) -> list:
        return [
            statement["Resource"]
            for policy in resources[role]["Properties"]["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]
            if statement["Action"] == "secretsmanager:GetSecretValue"
        ]

    for traces in ("off", "otlp", "xray"):
        resolved = resolved_ecs_template(
            Traces=traces, TracesEndpoint="https://api.honeycomb.io", TracesHeadersSecretArn=HEADERS
        )  # fmt: skip
        resources = resolved["Resources"]
        extra = [HEADERS] if traces == "otlp" else []  # the exporter's headers (its key)
        assert readable("ExecutionRole") == [[CONNECTION, *extra]], traces
        assert readable("MigrateExecutionRole") == [MIGRATION], traces
    api = resources["ApiTaskDefinition"]["Properties"]
    migrate = resources["MigrateTaskDefinition"]["Properties"]
    assert api["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert migrate["ExecutionRoleArn"] == {"Fn::GetAtt": ["MigrateExecutionRole", "Arn"]}
    (passing,) = [
        statement
        for policy in resources["MigrationRunnerRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "iam:PassRole"
    ]
    assert {"Fn::GetAtt": ["ExecutionRole", "Arn"]} not in passing["Resource"]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


# -- traces from the ECS service ------------------------------------------------------------

CONNECTION = "arn:aws:secretsmanager:ca-central-1:123456789012:secret:cruddur/api-url-AbCdEf"
MIGRATION = "arn:aws:secretsmanager:ca-central-1:123456789012:secret:cruddur/owner-url-AbCdEf"
HEADERS = "arn:aws:secretsmanager:ca-central-1:123456789012:secret:cruddur/honeycomb-AbCdEf"
_NO_VALUE = object()


def resolved_ecs_template(**given: str) -> dict:
    """deploy/ecs-service.yaml as CloudFormation would see it with these parameters (the
    others at their defaults, the two secrets above): each Fn::If decided, each
    AWS::NoValue and each resource whose condition is false gone; Ref to a parameter
    replaced by its value. Other intrinsics stay."""
    template, problems = decode(str(ECS_TEMPLATE))
    assert not problems
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    values.update(ConnectionSecretArn=CONNECTION, MigrationSecretArn=MIGRATION, **given)
    for name, value in values.items():
        pattern = template["Parameters"][name].get("AllowedPattern")
        if pattern and value:
            assert re.fullmatch(pattern, value), (name, value)
        assert value in template["Parameters"][name].get("AllowedValues", [value]), name
    conditions: dict[str, bool] = {}

    def holds(expression: dict) -> bool:
        ((function, arguments),) = expression.items()
        if function == "Condition":
            return condition(arguments)
        if function == "Fn::Equals":
            left, right = (resolve(argument) for argument in arguments)
            return left == right
        if function == "Fn::Not":
            return not holds(arguments[0])
        if function == "Fn::And":
            return all(holds(argument) for argument in arguments)
        if function == "Fn::Or":
            return any(holds(argument) for argument in arguments)
        raise AssertionError(f"no such condition function: {function}")

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = holds(template["Conditions"][name])
        return conditions[name]

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [kept for item in node if (kept := resolve(item)) is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            return resolve(when_true if condition(name) else when_false)
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        if set(node) == {"Ref"} and node["Ref"] in values:
            return values[node["Ref"]]
        return {
            key: kept for key, value in node.items() if (kept := resolve(value)) is not _NO_VALUE
        }

    for rule in template.get("Rules", {}).values():
        if holds(rule["RuleCondition"]):
            for assertion in rule["Assertions"]:
                assert holds(assertion["Assert"]), assertion["AssertDescription"]
    resolved = resolve({key: value for key, value in template.items() if key != "Conditions"})
    # A resource whose condition is false is not made.
    resolved["Resources"] = {
        name: resource
        for name, resource in resolved["Resources"].items()
        if "Condition" not in resource or condition(resource["Condition"])
    }
    return resolved


def _task(resolved: dict) -> tuple[dict, dict[str, dict]]:
    """The API task definition's properties, and its containers by name."""
    task = resolved["Resources"]["ApiTaskDefinition"]["Properties"]
    return task, {container["Name"]: container for container in task["ContainerDefinitions"]}


def _environment(container: dict) -> dict[str, str]:
    return {item["Name"]: item["Value"] for item in container.get("Environment", [])}


def _policies(resolved: dict, role: str) -> str:
    return json.dumps(resolved["Resources"][role]["Properties"].get("Policies", []))


def test_traces_are_off_unless_the_stack_asks_for_them() -> None:
    resolved = resolved_ecs_template()
    _, containers = _task(resolved)
    assert set(containers) == {"api"}
    assert not [name for name in _environment(containers["api"]) if name.startswith("OTEL_")]
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in str(containers["api"]["Secrets"])
    assert "DependsOn" not in containers["api"]
    assert "xray" not in _policies(resolved, "TaskRole")  # the API calls no AWS API


def test_traces_to_an_otlp_endpoint_take_their_key_from_a_secret() -> None:
    resolved = resolved_ecs_template(
        Traces="otlp", TracesEndpoint="https://api.honeycomb.io",
        TracesHeadersSecretArn=HEADERS, TracesSampleRatio="0.05",
    )  # fmt: skip
    _, containers = _task(resolved)
    assert set(containers) == {"api"}
    api = containers["api"]
    environment = _environment(api)
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://api.honeycomb.io"
    assert environment["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert environment["OTEL_TRACES_SAMPLER_ARG"] == "0.05"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in environment  # a key: never a plain value
    secrets = {item["Name"]: item["ValueFrom"] for item in api["Secrets"]}
    assert secrets["OTEL_EXPORTER_OTLP_HEADERS"] == HEADERS
    # What the task is given, the API takes: the same checks `serve` makes at start-up.
    settings = TelemetrySettings.from_env(
        {**environment, "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=k"}
    )
    assert (settings.traces_endpoint, settings.sampler) == (
        "https://api.honeycomb.io", "parentbased_traceidratio",
    )  # fmt: skip
    assert settings.sampler_ratio == 0.05
    assert "xray" not in _policies(resolved, "TaskRole")
    # Without a headers secret (a collector of your own), nothing more is read.
    resolved = resolved_ecs_template(Traces="otlp", TracesEndpoint="http://collector.internal:4318")
    _, containers = _task(resolved)
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in str(containers["api"]["Secrets"])


def test_traces_to_xray_go_through_a_collector_beside_the_api() -> None:
    import yaml

    resolved = resolved_ecs_template(Traces="xray")
    task, containers = _task(resolved)
    assert set(containers) == {"api", "otel-collector"}
    api, collector = containers["api"], containers["otel-collector"]
    assert _environment(api)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert _environment(api)["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    assert api["DependsOn"] == [{"ContainerName": "otel-collector", "Condition": "START"}]
    # A collector that stops costs traces, not the API.
    assert collector["Essential"] is False and api["Essential"] is True
    assert collector["Image"].startswith("public.ecr.aws/aws-observability/aws-otel-collector:")
    assert collector["LogConfiguration"]["LogDriver"] == "awslogs"
    config = yaml.safe_load(_environment(collector)["AOT_CONFIG_CONTENT"]["Fn::Sub"])
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "127.0.0.1:4318"
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"] and pipeline["exporters"] == ["awsxray"]
    assert config["exporters"]["awsxray"]["region"] == "${AWS::Region}"
    assert task["NetworkMode"] == "awsvpc"  # the containers share 127.0.0.1
    policies = _policies(resolved, "TaskRole")
    assert "xray:PutTraceSegments" in policies
    assert "secretsmanager" not in policies and "ssm" not in policies


@pytest.mark.parametrize(
    "endpoint",
    ["https://api.honeycomb.io", "http://collector.internal:4318", "http://10.0.0.5:4318/otlp",
     "http://collector:99999", "http://:4318", "https://[::1", "http://collector:43l8",
     "http://collector:0", "http://user:key@collector:4318", "https://h.io?key=1",
     "ftp://collector", "https://api.honeycomb.io/v1/traces", "http://c:4318/x/v1/traces/",
     "http://c:4318/v1/traces-archive"],
)  # fmt: skip
def test_the_template_takes_only_an_endpoint_the_api_takes(endpoint: str) -> None:
    # The template took endpoints the API refused at start: every task then exited, until
    # the deployment's circuit breaker rolled the release back, many minutes later.
    template, _ = decode(str(ECS_TEMPLATE))
    pattern = template["Parameters"]["TracesEndpoint"]["AllowedPattern"]
    try:
        TelemetrySettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        api_takes = True
    except ConfigError:
        api_takes = False
    taken = bool(re.fullmatch(pattern, endpoint))
    assert api_takes or not taken, endpoint
    assert taken == (
        endpoint in ("https://api.honeycomb.io", "http://collector.internal:4318",
                     "http://10.0.0.5:4318/otlp", "http://c:4318/v1/traces-archive")
    )  # fmt: skip


def test_a_reader_comes_with_one_read_after_key_for_every_task() -> None:
    # Without a reader: no reader, no key, nothing more to read.
    resolved = resolved_ecs_template()
    _, containers = _task(resolved)
    assert "ReadAfterKey" not in resolved["Resources"]
    assert "READER" not in str(containers["api"]) and "READ_AFTER" not in str(containers["api"])
    # With one: the reader's URL and the stack's own key, both from Secrets Manager (a key
    # of each task's own would refuse, with a 400, the X-Read-After another task signed).
    reader = "arn:aws:secretsmanager:ca-central-1:123456789012:secret:cruddur-reader-AbCdEf"
    resolved = resolved_ecs_template(ReaderSecretArn=reader)
    _, containers = _task(resolved)
    secrets = {item["Name"]: item["ValueFrom"] for item in containers["api"]["Secrets"]}
    assert secrets["READER_CONNECTION_URL"] == reader
    assert secrets["CRUDDUR_READ_AFTER_KEY"] == {"Ref": "ReadAfterKey"}
    assert not [n for n in _environment(containers["api"]) if "READ" in n]  # never plain
    generated = resolved["Resources"]["ReadAfterKey"]["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 32 and generated["ExcludePunctuation"] is True
    readable = _policies(resolved, "ExecutionRole")
    assert reader in readable and '"Ref": "ReadAfterKey"' in readable
    assert "ReadAfterKey" not in _policies(resolved, "MigrateExecutionRole")
    # What the task is given, the API takes: a key of that length passes serve's check.
    settings = ReplicaSettings.from_env({"CRUDDUR_READ_AFTER_KEY": "k" * 64})
    assert settings.read_after_key == "k" * 64


def test_the_migration_task_is_given_nothing_the_api_task_is() -> None:
    resources = resolved_ecs_template(Traces="xray")["Resources"]
    migrate = resources["MigrateTaskDefinition"]["Properties"]
    api = resources["ApiTaskDefinition"]["Properties"]
    assert migrate["TaskRoleArn"] != api["TaskRoleArn"]
    role = migrate["TaskRoleArn"]["Fn::GetAtt"][0]
    assert "Policies" not in resources[role]["Properties"]
    assert "xray" in json.dumps(resources["TaskRole"]["Properties"]["Policies"])


def test_traces_to_otlp_without_an_endpoint_are_refused() -> None:
    with pytest.raises(AssertionError, match="Traces=otlp needs TracesEndpoint"):
        resolved_ecs_template(Traces="otlp")
    with pytest.raises(AssertionError, match="TracesSampleRatio"):
        resolved_ecs_template(Traces="xray", TracesSampleRatio="1.5")


# -- the migration's custom resource ----------------------------------------------------------


class _Cfn:
    """Stands in for the `cfnresponse` module Lambda gives inline code: records the answer."""

    SUCCESS, FAILED = "SUCCESS", "FAILED"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None]] = []

    def send(self, event, context, status, data, physical_id=None, no_echo=False, reason=None):
        self.sent.append((status, reason))


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 600_000


TASK = "arn:aws:ecs:ca-central-1:123456789012:task/cruddur-api/0123456789abcdef0123456789abcdef"
_PROPS = {"Cluster": "cruddur-api", "TaskDefinition": "cruddur-api-migrate:7",
          "Subnets": ["subnet-0ccc"], "SecurityGroup": "sg-0123"}  # fmt: skip


def _run_migration(monkeypatch, run_task: dict, *described: dict) -> list:
    """The template's inline MigrationRunner, on a real boto3 ECS client answering as given
    (botocore's Stubber: AWS is not reachable here); what it told CloudFormation."""
    import sys
    import types

    import boto3
    from botocore.stub import Stubber

    template, _ = decode(str(ECS_TEMPLATE))
    code = template["Resources"]["MigrationRunner"]["Properties"]["Code"]["ZipFile"]
    cfn = _Cfn()
    monkeypatch.setitem(sys.modules, "cfnresponse", cfn)
    client = boto3.client("ecs", region_name="ca-central-1", aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    stub = Stubber(client)
    stub.add_response("run_task", run_task)
    for task in described:  # {}: not seen yet (ECS's API is eventually consistent)
        answer = {"tasks": [task], "failures": []} if task else {
            "tasks": [], "failures": [{"arn": TASK, "reason": "MISSING"}]}  # fmt: skip
        stub.add_response("describe_tasks", answer)
    monkeypatch.setattr(boto3, "client", lambda *a, **k: client)
    module = types.ModuleType("migration_runner")
    exec(compile(code, "MigrationRunner", "exec"), module.__dict__)
    module.time = types.SimpleNamespace(sleep=lambda seconds: None)  # no 10 s waits here
    with stub:
        module.handler({"RequestType": "Update", "ResourceProperties": _PROPS}, _Context())
        stub.assert_no_pending_responses()
    return cfn.sent


def _stopped(exit_code: int | None, **more: str) -> dict:
    container = {"name": "migrate", **({"exitCode": exit_code} if exit_code is not None else {})}
    container.update({k: v for k, v in more.items() if k == "reason"})
    task = {"taskArn": TASK, "lastStatus": "STOPPED", "containers": [container]}
    task.update({k: v for k, v in more.items() if k == "stoppedReason"})
    return task


def test_a_migration_that_exits_0_lets_the_update_go_on(monkeypatch) -> None:
    started = {"tasks": [{"taskArn": TASK}], "failures": []}
    assert _run_migration(monkeypatch, started, _stopped(0)) == [("SUCCESS", None)]
    # A task ECS does not show yet, just after starting it, is waited for: it failed the
    # update with "IndexError: list index out of range" while the migration ran on.
    running = {"taskArn": TASK, "lastStatus": "RUNNING", "containers": [{"name": "migrate"}]}
    sent = _run_migration(monkeypatch, started, {}, running, _stopped(0))
    assert sent == [("SUCCESS", None)]


def test_a_failed_migration_says_why_and_where_its_log_is(monkeypatch) -> None:
    # Each said "exited None: see the log group", or "list index out of range".
    started = {"tasks": [{"taskArn": TASK}], "failures": []}
    [(status, reason)] = _run_migration(monkeypatch, started, _stopped(3))
    assert status == "FAILED"
    assert "exited 3" in reason
    assert "log stream migrate/migrate/0123456789abcdef0123456789abcdef" in reason

    pull = "CannotPullContainerError: pull image manifest has been retried 5 time(s)"
    stopped = _stopped(None, stoppedReason="Task failed to start", reason=pull)
    [(status, reason)] = _run_migration(monkeypatch, started, stopped)
    assert status == "FAILED"
    assert "never ran to an exit code" in reason and "Task failed to start" in reason
    assert pull in reason

    failure = {
        "arn": "arn:aws:ecs:ca-central-1:123456789012:container-instance/x",
        "reason": "RESOURCE:ENI",
        "detail": "no free address in subnet-0ccc",
    }
    refused = {"tasks": [], "failures": [failure]}
    [(status, reason)] = _run_migration(monkeypatch, refused)
    assert status == "FAILED"
    assert reason.startswith("the migration task did not start: RESOURCE:ENI")
    assert "no free address in subnet-0ccc" in reason


@pytest.mark.parametrize(
    ("given", "reader"),
    [
        ({}, None),
        # The example gave postgres's URL; now the API's role's, with the replica's host.
        ({"READER_HOST": "db-replica"}, "postgresql://cruddur_api:p%40ss@db-replica:5432/cruddur"),
        ({"READER_HOST": "db-replica", "READER_CONNECTION_URL": "postgresql://r@x/y"},
         "postgresql://r@x/y"),
    ],
)  # fmt: skip
def test_compose_api_reads_the_replica_as_its_own_role(tmp_path, given, reader) -> None:
    # The api service's command, run by sh with a roles file and a `cruddur` that prints
    # what it was given.
    import yaml

    command = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["api"]["command"]
    roles = tmp_path / "db-roles.env"
    roles.write_text(
        "CRUDDUR_API_CONNECTION_URL='postgresql://cruddur_api:p%40ss@db:5432/cruddur'\n"
    )
    (tmp_path / "cruddur").write_text('#!/bin/sh\necho "reader=${READER_CONNECTION_URL-unset}"\n')
    (tmp_path / "cruddur").chmod(0o755)
    script = command[0].replace("$$", "$").replace("/home/cruddur/roles/db-roles.env", str(roles))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", **given}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"reader={reader or 'unset'}"


def test_the_cognito_parameters_must_be_full_names() -> None:
    # The ARNs are made as …:parameter${Name}: a name without its leading / made an ARN
    # of no parameter, and no task could read its settings.
    template, _ = decode(str(ECS_TEMPLATE))
    for name in ("CognitoUserPoolIdParameter", "CognitoClientIdParameter"):
        pattern = template["Parameters"][name]["AllowedPattern"]
        assert re.fullmatch(pattern, "/cruddur/cognito/user-pool-id")
        assert not re.fullmatch(pattern, "cruddur-user-pool-id")


def test_a_release_keeps_the_task_count_autoscaling_set() -> None:
    # A review: DesiredCount in the service made every update (a new ImageUri) set the
    # count back to MinTasks, cutting what autoscaling had added mid-deploy.
    resources = resolved_ecs_template()["Resources"]
    assert "DesiredCount" not in resources["Service"]["Properties"]
    min_tasks = decode(str(ECS_TEMPLATE))[0]["Parameters"]["MinTasks"]["Default"]
    assert str(resources["ScalableTarget"]["Properties"]["MinCapacity"]) == str(min_tasks)


def assert_own_logs_only(role: dict) -> None:
    """A review: AWSLambdaVPCAccessExecutionRole let the function write to every log
    group of the account. Its log actions now name the function's own group; the network
    interfaces a VPC function needs stay (they have no resource-level form)."""
    assert "ManagedPolicyArns" not in role
    (own,) = [p for p in role["Policies"] if isinstance(p, dict) and "PolicyName" in p]
    statements = own["PolicyDocument"]["Statement"]
    logs = [s for s in statements if any(a.startswith("logs:") for a in s["Action"])]
    assert logs == [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::GetAtt": ["FunctionLogGroup", "Arn"]},
        }
    ]
    network = [s for s in statements if s not in logs]
    assert all(a.startswith("ec2:") for s in network for a in s["Action"])
    assert "ec2:CreateNetworkInterface" in str(network)


@pytest.mark.parametrize("name", ["post-confirmation.yaml", "purge-expired.yaml"])
def test_the_lambdas_secret_is_an_arn_or_nothing(name: str) -> None:
    # A review: a secret's name passed the template's checks, and the stack failed on
    # the role's policy (an ARN or *), after making the security groups, and rolled back.
    template, problems = decode(str(ROOT / "deploy" / name))
    assert not problems
    pattern = template["Parameters"]["ConnectionSecretArn"]["AllowedPattern"]
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cruddur-lambda-db-AbCdEf"
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, arn)
    assert not re.fullmatch(pattern, "cruddur-lambda-db")


def test_production_admits_no_other_origin_unless_named() -> None:
    # A review: FrontendUrl left empty admitted http://localhost:3000 in production.
    _, containers = _task(resolved_ecs_template())
    assert _environment(containers["api"])["FRONTEND_URL"] == "none"
    _, named = _task(resolved_ecs_template(FrontendUrl="https://cruddur.example.com"))
    assert _environment(named["api"])["FRONTEND_URL"] == "https://cruddur.example.com"


@pytest.mark.parametrize("name", ["ecs-service", "post-confirmation", "purge-expired"])
def test_log_groups_outlive_their_stack(name: str) -> None:
    # A review: deleting or replacing a stack took its last 30 days of lines with it.
    template, problems = decode(str(ROOT / "deploy" / f"{name}.yaml"))
    assert not problems
    groups = {
        key: resource
        for key, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Logs::LogGroup"
    }
    assert groups
    for key, group in groups.items():
        assert (group.get("DeletionPolicy"), group.get("UpdateReplacePolicy")) == (
            "Retain",
            "Retain",
        ), key


def test_the_migration_runner_writes_its_own_log_group_only() -> None:
    # A review: AWSLambdaBasicExecutionRole let it write to every log group of the account.
    template, _ = decode(str(ECS_TEMPLATE))
    role = template["Resources"]["MigrationRunnerRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    logging = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    assert [s["Resource"] for s in logging] == [{"Fn::GetAtt": ["MigrationRunnerLogGroup", "Arn"]}]
    runner = template["Resources"]["MigrationRunner"]["Properties"]
    assert runner["LoggingConfig"] == {"LogGroup": {"Ref": "MigrationRunnerLogGroup"}}
