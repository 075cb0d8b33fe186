"""boto3 clients with short timeouts and few retries: a CLI should answer, not hang."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
)


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client for `service` from the usual AWS settings (see the package docstring)."""
    # boto3 reads AWS_DEFAULT_REGION but not AWS_REGION, which the AWS CLI and the other
    # SDKs read first; honour it the same way.
    if not kwargs.get("region_name") and os.environ.get("AWS_REGION"):
        kwargs["region_name"] = os.environ["AWS_REGION"]
    return boto3.session.Session().client(service, config=_CONFIG, **kwargs)
