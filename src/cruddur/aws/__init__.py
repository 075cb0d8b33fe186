"""Talking to AWS: boto3 clients made one way, and AWS errors explained in one line.

Region, profile, credentials and the endpoint come from boto3's usual settings
(AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE, ~/.aws/…, AWS_ENDPOINT_URL), so the same
commands reach AWS, or a local emulator such as moto's server in the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cruddur.aws.clients import client
    from cruddur.aws.errors import explain_aws

__all__ = ["client", "explain_aws"]


def __getattr__(name: str) -> Any:
    # Imported on first use, as boto3 is (~150 ms): `cruddur rds --help` reads the
    # defaults of cruddur.aws.rds, a submodule, and needs no client.
    if name == "client":
        from cruddur.aws.clients import client

        return client
    if name == "explain_aws":
        from cruddur.aws.errors import explain_aws

        return explain_aws
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
