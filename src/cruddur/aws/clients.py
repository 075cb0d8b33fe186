"""boto3 clients with short timeouts and few retries: a CLI should answer, not hang."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from cruddur.aws.problems import AwsProblem

# total_max_attempts: three in all (botocore's max_attempts counts the retries after the
# first: 3 made four, up to two minutes against an endpoint that never answers).
_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 3, "mode": "standard"}
)


@functools.cache
def _models() -> botocore.loaders.Loader:
    """botocore's reader of the services' JSON models, shared by every session: each new
    session otherwise parses a service's model again (0.1-0.2 s of CPU for EC2's)."""
    return botocore.loaders.create_loader()


def client(service: str, **kwargs: Any) -> Any:
    """A boto3 client for `service` from the usual AWS settings (see the package docstring)."""
    # boto3 reads AWS_DEFAULT_REGION but not AWS_REGION, which the AWS CLI and the other
    # SDKs read first; honour it the same way.
    if not (kwargs.get("region_name") or "").strip():
        kwargs.pop("region_name", None)  # blank (`--region ""`): as if not given
        if os.environ.get("AWS_REGION"):
            kwargs["region_name"] = os.environ["AWS_REGION"]
    # A new session each time, so credentials, region and endpoint are read afresh.
    session = botocore.session.Session()
    session.register_component("data_loader", _models())
    try:
        return boto3.session.Session(botocore_session=session).client(
            service, config=_CONFIG, **kwargs
        )
    except ValueError as exc:  # botocore's "Invalid endpoint: …" (a region or URL it cannot use)
        raise AwsProblem(
            f"cannot reach AWS's {service}: {exc}",
            "check AWS_ENDPOINT_URL (a URL such as http://127.0.0.1:5000) and the region "
            "(--region, AWS_REGION or AWS_DEFAULT_REGION)",
        ) from None
