"""The application: JSON API, OpenAPI document and docs served without any CDN, and the console.

``create_app(get_backend)``: ``get_backend`` is called per request (it returns the same Backend
each time); on Lambda it builds the clients at the first request, never at import."""


import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from python_multipart.exceptions import FormParserError
from starlette.exceptions import HTTPException

from pagemill.api import models, service
from pagemill.api.backend import Backend
from pagemill.errors import (
    EmptyFile,
    FileTooLarge,
    InputError,
    NotAPdf,
    NotRedrivable,
    NotRunning,
    PagemillError,
    SourceMissing,
    TransientError,
    UnknownDocument,
)

log = logging.getLogger(__name__)

STATUSES = ("running", "succeeded", "partial", "failed", "cancelled", "interrupted")
# Multipart framing around the file: a request this much over the limit is refused unread.
_MULTIPART_SLACK = 64 * 1024

_STATUS_OF: list[tuple[type[Exception], int]] = [
    (UnknownDocument, 404), (SourceMissing, 404), (service.PageOutOfRange, 404), (service.UnknownImage, 404), (service.NoAudio, 404),
    (NotRunning, 409), (NotRedrivable, 409), (service.NotAvailableHere, 501), (service.BadRequest, 400),
    (NotAPdf, 415), (FileTooLarge, 413), (EmptyFile, 400), (InputError, 400),
    (TransientError, 503),
]
_PROBLEM = {"model": models.Problem}


def create_app(get_backend: Callable[[], Backend]) -> FastAPI:
    app = FastAPIOffline(
        title="pagemill",
        version="1",
        description="Upload PDFs, follow their progress, read their pages and images, search them.",
        responses={404: _PROBLEM, 409: _PROBLEM, 503: _PROBLEM},
    )
    _error_handlers(app)

    def backend() -> Backend:
        return get_backend()

    def connection(b: Annotated[Backend, Depends(backend)]) -> Iterator[Any]:
        with b.connection() as conn:
            yield conn

    BackendDep = Annotated[Backend, Depends(backend)]
    Conn = Annotated[Any, Depends(connection)]

    @app.get("/health", response_model=models.Health, tags=["system"])
    def health(b: BackendDep) -> Any:
        """Database, storage and state machine reachable (503 when one is not)."""
        result = service.health(b, b.connection)
        return JSONResponse(result.model_dump(), status_code=200 if result.status == "ok" else 503)

    @app.post(
        "/documents", status_code=202, response_model=models.Accepted, tags=["documents"],
        responses={400: _PROBLEM, 413: _PROBLEM, 415: _PROBLEM},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary", "description": "The PDF."}},
        }}}}},
    )
    async def upload(request: Request, b: BackendDep) -> Any:
        """Upload a PDF (multipart field `file`): stored under uploads/, then the pipeline starts as for
        any upload. The body is spooled to disk while it arrives, never held in memory whole."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > b.max_upload_bytes + _MULTIPART_SLACK:
            raise FileTooLarge(
                f"The request is {int(length) / 2**20:.1f} MiB, over this API's {b.max_upload_bytes / 2**20:.1f} MiB "
                "limit for POST /documents. Ask POST /uploads for a presigned upload, or split the PDF."
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise service.BadRequest("Send the PDF as multipart/form-data with the file in the field named `file`.")
        try:
            form = await request.form(max_files=1, max_fields=10)
        except FormParserError as exc:
            raise service.BadRequest(f"The request body is not valid multipart/form-data ({exc}). Send the PDF as "
                       "multipart/form-data with the file in the field named `file`.") from exc
        try:
            file = form.get("file")
            if file is None or isinstance(file, str):
                raise service.BadRequest("The form has no file in the field named `file`: send the PDF as that field.")
            return await run_in_threadpool(_accept, b, file.file, file.filename or "upload.pdf")
        finally:
            await form.close()  # the spooled temporary file

    def _accept(b: Backend, file: Any, file_name: str) -> models.Accepted:
        with b.connection() as conn:
            return service.accept_upload(b, conn, file, file_name)

    @app.post("/uploads", response_model=models.PresignedUpload, tags=["documents"], responses={501: _PROBLEM})
    def presign(body: models.PresignRequest, b: BackendDep) -> Any:
        """A presigned S3 POST for files over POST /documents' limit; the stack's S3 event trigger
        starts the pipeline when the upload completes."""
        return service.presign_upload(b, body.file_name)

    @app.get("/documents", response_model=models.DocumentList, tags=["documents"])
    def list_documents(
        b: BackendDep, conn: Conn,
        status: Annotated[str | None, Query(description=f"One of {', '.join(STATUSES)}.")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Any:
        if status is not None and status not in STATUSES:
            raise service.BadRequest(f"status must be one of {', '.join(STATUSES)}; got {status!r}.")
        return service.list_documents(b, conn, status=status, limit=limit, offset=offset)

    @app.get("/documents/{document_id}", response_model=models.DocumentDetail, tags=["documents"])
    def document(document_id: str, b: BackendDep, conn: Conn) -> Any:
        """Status; while running, progress (pages, batches, state, time left); the failure and what to
        do about it, or warnings; timings, type, summary, products and images."""
        return service.document_detail(b, conn, document_id)

    @app.get("/documents/{document_id}/pages/{page_no}", response_class=PlainTextResponse, tags=["documents"],
             responses={200: {"content": {"text/markdown": {}}}})
    def page(document_id: str, page_no: int, conn: Conn) -> Any:
        """A page's markdown (pages count from 1)."""
        return PlainTextResponse(service.page_markdown(conn, document_id, page_no), media_type="text/markdown")

    @app.get("/documents/{document_id}/images/{image_no}", tags=["documents"],
             responses={200: {"content": {"image/*": {}}}})
    def image(
        document_id: str, image_no: int, b: BackendDep, conn: Conn,
        size: Annotated[str, Query(pattern="^(full|thumbnail)$", description="full, or thumbnail (256 px)")] = "full",
    ) -> Response:
        data, media = service.image_bytes(b, conn, document_id, image_no, thumbnail=size == "thumbnail")
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/documents/{document_id}/audio", tags=["documents"], responses={200: {"content": {"audio/mpeg": {}}}})
    def audio(document_id: str, b: BackendDep, conn: Conn) -> Response:
        """The spoken summary, when the pipeline made one."""
        data, media = service.audio(b, conn, document_id)
        return Response(data, media_type=media)

    @app.post("/documents/{document_id}/cancel", response_model=models.Outcome, tags=["operate"])
    def cancel(document_id: str, request: Request, b: BackendDep, conn: Conn) -> Any:
        return service.cancel(b, conn, document_id, f"cancelled through the API by {_caller(request)}")

    @app.post("/documents/{document_id}/redrive", response_model=models.Outcome, tags=["operate"])
    def redrive(document_id: str, b: BackendDep, conn: Conn) -> Any:
        return service.redrive(b, conn, document_id)

    @app.get("/stats", response_model=models.Stats, tags=["system"])
    def stats(conn: Conn) -> Any:
        return service.stats(conn)

    @app.get("/search", response_model=list[models.SearchHit], tags=["search"])
    def search(
        b: BackendDep, conn: Conn,
        q: Annotated[str, Query(min_length=1, max_length=500, description="What to look for, in words.")],
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        document: Annotated[str | None, Query(description="Only this document's hits.")] = None,
    ) -> Any:
        return service.search(b, conn, q, limit=limit, document=document)

    from pagemill.api.console import add_console

    add_console(app, backend, connection)
    return app


def _caller(request: Request) -> str:
    """Who called, as API Gateway's IAM authorizer tells it; locally the client's address."""
    event = request.scope.get("aws.event") or {}
    iam = (event.get("requestContext") or {}).get("authorizer", {}).get("iam") or {}
    return iam.get("userArn") or (request.client.host if request.client else "unknown")


def _problem(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PagemillError)
    async def typed(request: Request, exc: PagemillError) -> JSONResponse:
        status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 500)
        if status >= 500:
            log.warning("request failed", extra={"path": request.url.path, "error": type(exc).__name__,
                                                 "detail": str(exc)})
        name = type(exc).__name__
        return _problem(status, name, str(exc) if status < 500 or status in (501, 503) else "Internal error; it was logged.")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return _problem(422, "InvalidRequest", "; ".join(parts) or "The request is not valid.")

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and "pars" in message.lower():
            message = f"The request body could not be read as multipart/form-data ({message})."
        elif exc.status_code == 404:
            message = f"There is nothing at {request.url.path}. See /docs for the API."
        return _problem(exc.status_code, "HTTPError", message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"path": request.url.path})
        return _problem(500, "InternalError", "Something went wrong on the server; it was logged. Try again later.")
