"""deploy/post-confirmation.yaml: valid for cfn-lint, and in step with the package."""

from __future__ import annotations

from pathlib import Path

from cfnlint.decode import decode
from helpers import ROOT, run

from cruddur.cli.lambdas import DEFAULT_OUTPUT
from cruddur.ops.packaging import HANDLER

TEMPLATE = ROOT / "deploy/post-confirmation.yaml"
CFN_LINT = ROOT / ".venv/bin/cfn-lint"


def test_the_template_passes_cfn_lint(tmp_path: Path) -> None:
    linted = run(CFN_LINT, str(TEMPLATE))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # The same run does catch a mistake in this template (so the pass above means something).
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("RetentionInDays: 30", "RetentionInDays: 31"))
    assert run(CFN_LINT, str(broken)).returncode != 0


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
    assert (ingress["FromPort"], ingress["ToPort"], ingress["IpProtocol"]) == (5432, 5432, "tcp")

    permission = resources["CognitoInvokePermission"]["Properties"]
    assert permission["Principal"] == "cognito-idp.amazonaws.com"
    assert "userpool/${UserPoolId}" in str(permission["SourceArn"])
