"""The AWS plumbing every AWS command shares: clients reach moto's server, errors explained."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from cruddur.aws import client, explain_aws


def test_client_talks_to_the_emulator(aws: dict[str, str]) -> None:
    ec2 = client("ec2")
    assert ec2.meta.endpoint_url == aws["AWS_ENDPOINT_URL"]
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert any(group["GroupName"] == "default" for group in groups)


def test_aws_errors_come_out_as_one_line(aws: dict[str, str]) -> None:
    with pytest.raises(ClientError) as caught:
        client("rds").describe_db_instances(DBInstanceIdentifier="no-such-instance")
    explained = explain_aws(caught.value)
    assert explained is not None
    assert "DBInstanceNotFound" in explained.message
    missing = explain_aws(NoCredentialsError())
    assert missing is not None and "aws configure" in (missing.hint or "")
    assert explain_aws(ValueError("not AWS")) is None
