"""The HTTP API and the web console (FastAPI): the same application served by ``pagemill serve``
over the local engine and by the API Lambda (Mangum) behind API Gateway. Everything it touches
arrives in a Backend built at the edge (pagemill_tools.serve locally, lambdas/api on AWS)."""
