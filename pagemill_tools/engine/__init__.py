"""The local engine: the synthesized state machine on moto's interpreter, each Lambda in a
worker process, each ECS task as a local process, PostgreSQL embedded."""

from unittest import mock

import boto3

# moto's EC2 models (which its ECS and Batch models import, and with them the engine and moto's
# Step Functions interpreter) list the regions at import with three new boto3 Sessions, each
# loading botocore's endpoint data again: 0.2-0.3 s of the engine's start-up. One Session serves
# the three; imported here, before any module of the engine imports moto's.
with mock.patch.object(boto3, "Session", lambda _shared=boto3.Session(): _shared):
    import moto.ec2.models  # noqa: F401
