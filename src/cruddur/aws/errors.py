"""The AWS errors people meet, as one line and a hint (the CLI prints them)."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as AwsConnectionError
from botocore.parsers import ResponseParserError

from cruddur.errors import Explanation

_CREDENTIALS_HINT = (
    "configure AWS credentials: `aws configure`, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY"
)

# Error codes whose fix is the same whichever call met them.
_BY_CODE: dict[str, tuple[str, str]] = {
    "UnrecognizedClientException": ("aws-credentials", _CREDENTIALS_HINT),
    "InvalidClientTokenId": ("aws-credentials", _CREDENTIALS_HINT),
    "ExpiredToken": ("aws-credentials", "your AWS session has expired: sign in again"),
    "ExpiredTokenException": ("aws-credentials", "your AWS session has expired: sign in again"),
    "AccessDenied": (
        "aws-permission",
        "your AWS identity lacks a permission this needs: the README lists them",
    ),
    "AccessDeniedException": (
        "aws-permission",
        "your AWS identity lacks a permission this needs: the README lists them",
    ),
    "UnauthorizedOperation": (
        "aws-permission",
        "your AWS identity lacks a permission this needs: the README lists them",
    ),
}


def explain_aws(exc: BaseException) -> Explanation | None:
    """One line (and a hint) for an AWS error, or None when it is not one."""
    if isinstance(exc, NoCredentialsError):
        return Explanation("aws-credentials", "no AWS credentials found", _CREDENTIALS_HINT)
    if isinstance(exc, NoRegionError):
        return Explanation(
            "aws-region", "no AWS region set", "set AWS_REGION (or AWS_DEFAULT_REGION), or --region"
        )
    if isinstance(exc, ProfileNotFound):
        return Explanation("aws-profile", str(exc), "check AWS_PROFILE and ~/.aws/config")
    if isinstance(exc, EndpointConnectionError):
        return Explanation(
            "aws-unreachable", str(exc), "check your network, the region, and AWS_ENDPOINT_URL"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = f"{code}: {error.get('Message', exc)}"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("Unknown", str(status)) and not error.get("Message"):
            # An answer botocore could read nothing from but its status (a proxy's HTML
            # 502): "Unknown: An error occurred (Unknown) when calling …" said less.
            message = f"AWS answered HTTP {status} without an AWS error in it"
        kind, hint = _BY_CODE.get(code, ("aws", None))
        return Explanation(kind, message, hint)
    if isinstance(exc, BotoCoreError):
        return Explanation("aws", str(exc))
    if isinstance(exc, ResponseParserError):
        # Not a BotoCoreError: an answer not in AWS's format (an HTML 5xx from a proxy,
        # or from an endpoint that is no AWS service), quoted whole in its message.
        return Explanation(
            "aws-unreadable",
            "the AWS endpoint answered with something that is not an AWS answer",
            "check the region, AWS_ENDPOINT_URL and any proxy on the way",
        )
    return None


# Codes AWS answers when it is busy or slow, not when the call is wrong: worth another
# look a little later (botocore's standard retry mode treats them so, a few times).
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
    }
)


def transient(exc: BaseException) -> bool:
    """Whether an AWS call's error says to try again later (throttled, a 5xx, the
    network), not that the call was wrong."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    return isinstance(exc, AwsConnectionError | HTTPClientError)


def permission_denied(exc: ClientError) -> bool:
    """Whether AWS refused this call to this identity (AccessDenied and its kin).

    A 403 whose body botocore could not read counts too: it then names the code after
    the HTTP status. CloudWatch speaks CBOR, and moto (the tests' AWS) answers a denied
    call to it in XML."""
    explained = explain_aws(exc)
    if explained is not None and explained.kind == "aws-permission":
        return True
    return str(exc.response.get("Error", {}).get("Code", "")) == "403"
