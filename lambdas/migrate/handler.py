"""Schema migrations at deploy: the handler of the stack's schema custom resource (through the
CDK Provider framework, which answers CloudFormation), thin over pagemill.db.migrate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from pagemill.aws.clients import db_connection
from pagemill.db.migrate import migrate, migrations

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
PHYSICAL_ID = "pagemill-schema"
REQUEST_TYPES = ("Create", "Update", "Delete")


@logger.inject_lambda_context(clear_state=True)
def on_event(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = event.get("RequestType")
    if request not in REQUEST_TYPES:
        raise ValueError(f"not a CloudFormation custom resource event: RequestType is {request!r}")
    physical_id = event.get("PhysicalResourceId") or PHYSICAL_ID
    logger.append_keys(request=request, migrations_hash=event.get("ResourceProperties", {}).get("MigrationsHash"))
    if request == "Delete":
        # The schema, and every document in it, outlives this resource: deleting the stack or
        # replacing the resource drops nothing (the instance keeps a final snapshot anyway).
        logger.info("schema left as it is")
        return {"PhysicalResourceId": physical_id}
    applied = migrate(db_connection())
    version = migrations()[-1].version
    logger.info("schema migrated", extra={"applied": applied, "schema_version": version})
    return {
        "PhysicalResourceId": physical_id,
        "Data": {"SchemaVersion": str(version), "Applied": ",".join(str(v) for v in applied)},
    }
