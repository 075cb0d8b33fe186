"""Talking to AWS: boto3 clients made one way, and AWS errors explained in one line.

Region, profile, credentials and the endpoint come from boto3's usual settings
(AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE, ~/.aws/…, AWS_ENDPOINT_URL), so the same
commands reach AWS, or a local emulator such as moto's server in the tests.
"""

from cruddur.aws.clients import client
from cruddur.aws.errors import explain_aws

__all__ = ["client", "explain_aws"]
