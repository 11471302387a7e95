"""The HTTP API and console on Lambda behind API Gateway (HTTP API, payload 2.0): the same
application ``pagemill serve`` runs, adapted by Mangum. The Backend (clients, database, CLIP text
encoder) is built at the first request, never at import."""

from __future__ import annotations

from mangum import Mangum

from pagemill.api.app import create_app
from pagemill.aws.clients import api_backend
from pagemill.aws.handler import logger

# No lifespan: nothing to start or stop per execution environment.
api = logger.inject_lambda_context(clear_state=True)(Mangum(create_app(api_backend), lifespan="off"))
