"""The HTTP API and console on Lambda behind API Gateway (HTTP API, payload 2.0): the same
application ``pagemill serve`` runs, adapted by Mangum. The Backend (clients, database, CLIP text
encoder) is built at the first request, never at import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mangum import Mangum

from pagemill.api.app import create_app
from pagemill.aws.clients import api_backend
from pagemill.aws.handler import logger, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# No lifespan: nothing to start or stop per execution environment.
_asgi = Mangum(create_app(api_backend), lifespan="off")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def api(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _asgi(event, context)
