"""Claude captions for extracted images and document understanding (type, summary, products),
with our own retries, a circuit breaker shared by all concurrent invocations and a per-document
token budget. Model API trouble never fails a document: it ends as "skipped" with the reason.

Modules: ``client`` (the SDK client and the guarded call), ``breaker`` (circuit breaker and its
DynamoDB store), ``budget`` (token budget), ``caption`` (image captions), ``understand``
(document understanding). Import the submodules directly; this package imports nothing, so the
Write stage can read caption results without loading the anthropic SDK."""
