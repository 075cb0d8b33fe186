"""deploy/*.yaml: valid for cfn-lint, and in step with the package (the purge's own
template: test_purge_lambda.py)."""

from __future__ import annotations

import json

import pytest
from cfnlint.decode import decode
from helpers import ROOT, run

from cruddur.cli.lambdas import DEFAULT_OUTPUT
from cruddur.ops.packaging import HANDLER

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
    assert (TEMPLATE.parent / function["CodeUri"]).resolve() == (ROOT / DEFAULT_OUTPUT).resolve()
    assert function["Timeout"] <= 5  # Cognito waits 5 s for a trigger
    assert set(template["Parameters"]["Architecture"]["AllowedValues"]) == {"x86_64", "arm64"}

    role = resources["FunctionRole"]["Properties"]
    assert "AWSLambdaVPCAccessExecutionRole" in str(role["ManagedPolicyArns"])
    assert "secretsmanager:GetSecretValue" in str(role["Policies"])

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


def test_settings_come_from_secrets_and_parameters_never_plain_values() -> None:
    template, _ = decode(str(ECS_TEMPLATE))
    resources = template["Resources"]
    for name in ("ApiTaskDefinition", "MigrateTaskDefinition"):
        for container in resources[name]["Properties"]["ContainerDefinitions"]:
            plain = {item["Name"] for item in container.get("Environment", [])}
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


# -- compose.yaml ---------------------------------------------------------------------------


def test_compose_starts_the_api_after_a_healthy_database_and_a_finished_migration() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    api = services["api"]
    assert api["depends_on"]["db"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "cruddur.healthcheck" in " ".join(api["healthcheck"]["test"])
    assert "pg_isready" in services["db"]["healthcheck"]["test"]
    assert "@db:5432/" in api["environment"]["CONNECTION_URL"]
    assert "db migrate" in " ".join(services["migrate"]["command"])
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

    assert readable("ExecutionRole") == [{"Ref": "ConnectionSecretArn"}]
    assert readable("MigrateExecutionRole") == [{"Ref": "MigrationSecretArn"}]
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
