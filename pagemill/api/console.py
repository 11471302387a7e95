"""The web console: server-rendered pages (Jinja2) with a little JavaScript for live progress,
drag-and-drop upload and search. Everything it needs is served from /static: no CDN."""


from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt

from pagemill.api import service
from pagemill.api.backend import Backend
from pagemill.db import overview
from pagemill.operate import FINISHED

_HERE = Path(__file__).parent
# Raw HTML in page markdown is shown as text, never run.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def add_console(app: FastAPI, backend: Callable[..., Backend], connection: Callable[..., Any]) -> None:
    # Autoescaped: file names, captions and errors come from uploads and the model.
    templates = Jinja2Templates(env=Environment(
        loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"])))
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    BackendDep = Annotated[Backend, Depends(backend)]
    Conn = Annotated[Any, Depends(connection)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request, b: BackendDep, conn: Conn, status: str | None = None) -> Any:
        listing = service.list_documents(b, conn, status=status, limit=100, offset=0)
        return templates.TemplateResponse(request, "index.html", {
            "listing": listing, "stats": service.stats(conn), "status": status, "max_upload": b.max_upload_bytes,
        })

    @app.get("/ui/documents/{document_id}", response_class=HTMLResponse, include_in_schema=False)
    def document(request: Request, document_id: str, b: BackendDep, conn: Conn) -> Any:
        detail = service.document_detail(b, conn, document_id)
        pages = []
        if detail.status in FINISHED and detail.page_count:
            pages = [
                (n, _MARKDOWN.render(md)) for n in range(1, detail.page_count + 1)
                if (md := overview.page_markdown(conn, document_id, n)) is not None
            ]
        return templates.TemplateResponse(request, "document.html", {"doc": detail, "pages": pages})

    @app.get("/ui/search", response_class=HTMLResponse, include_in_schema=False)
    def search(
        request: Request, b: BackendDep, conn: Conn,
        q: Annotated[str, Query(max_length=500)] = "", limit: Annotated[int, Query(ge=1, le=100)] = 24,
    ) -> Any:
        hits = service.search(b, conn, q, limit=limit, document=None) if q.strip() else []
        return templates.TemplateResponse(request, "search.html", {"q": q, "hits": hits})
