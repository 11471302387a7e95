"""The HTTP API over the real local engine and PostgreSQL: upload → succeeded with progress on the
way, stats and search see it, cancel and redrive, and every bad input a 4xx that says why."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pymupdf
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pagemill.api.app import create_app
from pagemill.api.backend import Backend
from pagemill.settings import Settings
from pagemill_tools.engine.engine import LocalEngine
from pagemill_tools.sample import make_catalog
from pagemill_tools.serve import local_backend
from tests.e2e.test_operate import text_pdf

pytestmark = pytest.mark.heavy(30)


@pytest.fixture(scope="module")
def backend(engine: LocalEngine, module_database_url: str) -> Backend:
    return local_backend(engine, module_database_url, Settings())


@pytest.fixture(scope="module")
def client(backend: Backend) -> Iterator[TestClient]:
    # Server errors come back as responses, so a 500 fails an assertion instead of raising.
    with TestClient(create_app(lambda: backend), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "catalog.pdf"
    make_catalog(path, pages=12)
    return path


def upload(client: TestClient, path: Path, name: str | None = None) -> dict[str, Any]:
    with open(path, "rb") as f:
        response = client.post("/documents", files={"file": (name or path.name, f, "application/pdf")})
    assert response.status_code == 202, response.text
    return response.json()


def wait_ended(client: TestClient, document_id: str, *, seen: Callable[[dict], None] | None = None,
               timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/documents/{document_id}")
        assert response.status_code == 200, response.text
        detail = response.json()
        if seen:
            seen(detail)
        if detail["status"] != "running":
            return detail
        assert time.monotonic() < deadline, f"document {document_id} still running: {detail}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def processed(client: TestClient, catalog: Path) -> dict[str, Any]:
    """The catalog uploaded and run to the end, with the progress seen while it ran."""
    accepted = upload(client, catalog)
    progress: list[dict[str, Any]] = []
    detail = wait_ended(client, accepted["document_id"],
                        seen=lambda d: progress.append(d["progress"]) if d["progress"] else None)
    return {"accepted": accepted, "detail": detail, "progress": progress}


def test_upload_runs_to_succeeded_with_progress_on_the_way(processed: dict[str, Any]) -> None:
    accepted, detail, progress = processed["accepted"], processed["detail"], processed["progress"]
    assert accepted["status"] == "running" and not accepted["duplicate"]
    assert accepted["execution_arn"].split(":")[-1].startswith("catalog-")  # the trigger's naming
    assert detail["status"] == "succeeded", detail
    assert detail["page_count"] == 12 and detail["file_name"] == "catalog.pdf"
    assert detail["progress"] is None and detail["failure"] is None
    assert detail["images"] and detail["timings"]
    # Progress was reported while it ran and only ever moved forward.
    assert progress, "no progress seen while running"
    done = [p["pages_done"] for p in progress]
    assert done == sorted(done)
    planned = [p for p in progress if p["page_count"]]
    assert all(p["page_count"] == 12 and p["batches"]["total"] >= 1 for p in planned)


def test_pages_images_and_thumbnails(client: TestClient, processed: dict[str, Any]) -> None:
    document_id = processed["accepted"]["document_id"]
    page = client.get(f"/documents/{document_id}/pages/1")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/markdown")
    assert page.text.strip()
    image = processed["detail"]["images"][0]
    full = client.get(image["url"])
    assert full.status_code == 200 and full.headers["content-type"].startswith("image/")
    thumb = client.get(image["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as img:
        assert max(img.size) <= 256


def test_listing_stats_and_search_see_it(client: TestClient, processed: dict[str, Any]) -> None:
    document_id = processed["accepted"]["document_id"]
    listed = client.get("/documents", params={"status": "succeeded"}).json()
    assert document_id in [d["document_id"] for d in listed["items"]]
    assert listed["counts"]["succeeded"] >= 1
    paged = client.get("/documents", params={"limit": 1, "offset": 0}).json()
    assert len(paged["items"]) == 1 and paged["total"] >= 1
    stats = client.get("/stats").json()
    assert stats["by_status"]["succeeded"] >= 1
    assert stats["pages_processed"] >= 12 and stats["images_processed"] >= len(processed["detail"]["images"])
    assert stats["last_hour"]["pages"] >= 12
    hits = client.get("/search", params={"q": "oak dining table", "limit": 20, "document": document_id}).json()
    assert hits and all(h["document_id"] == document_id for h in hits)
    # the hybrid search: passages with the matched terms marked, and images with thumbnails that load
    passages = [h for h in hits if h["kind"] == "chunk"]
    assert any("«" in h["text"] for h in passages) and all(h["first_page"] >= 1 for h in passages)
    images = [h for h in hits if h["kind"] == "image"]
    assert images and client.get(images[0]["thumbnail_url"]).status_code == 200


def test_same_content_again_is_a_duplicate(client: TestClient, processed: dict[str, Any], catalog: Path) -> None:
    again = upload(client, catalog, name="catalog copy.pdf")
    assert again["document_id"] == processed["accepted"]["document_id"]
    assert again["duplicate"] and again["status"] == "succeeded"


def test_cancel_then_redrive(client: TestClient, tmp_path: Path) -> None:
    accepted = upload(client, text_pdf(tmp_path / "long.pdf", 300, words="cancel me"))
    document_id = accepted["document_id"]
    cancelled = client.post(f"/documents/{document_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    detail = client.get(f"/documents/{document_id}").json()
    assert detail["status"] == "cancelled" and detail["failure"]["what_to_do"].startswith("It was cancelled")
    assert detail["links"]["redrive"]
    again = client.post(f"/documents/{document_id}/cancel")
    assert again.status_code == 409 and "not running" in again.json()["message"]
    deadline = time.monotonic() + 60
    while (redriven := client.post(f"/documents/{document_id}/redrive")).status_code == 409:
        # The row says cancelled at once; the execution stops a moment later.
        assert "still stopping" in redriven.json()["message"] and time.monotonic() < deadline
        time.sleep(0.2)
    assert redriven.status_code == 200, redriven.text
    assert redriven.json()["execution_arn"].endswith("-r1")
    assert wait_ended(client, document_id, timeout_s=300)["status"] == "succeeded"
    refused = client.post(f"/documents/{document_id}/redrive")
    assert refused.status_code == 409 and "succeeded" in refused.json()["message"]


def test_a_file_that_only_fails_in_the_pipeline_ends_failed_with_its_reason(client: TestClient) -> None:
    accepted = client.post("/documents", files={"file": ("broken.pdf", b"%PDF-1.7\nnot really a pdf", "application/pdf")})
    assert accepted.status_code == 202
    detail = wait_ended(client, accepted.json()["document_id"])
    assert detail["status"] == "failed"
    assert detail["failure"]["error_class"] == "MalformedPdf"
    assert "Export or print it to PDF again" in detail["failure"]["what_to_do"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"files": {"file": ("notes.pdf", b"hello, I am text", "application/pdf")}}, 415, "not a PDF"),
        ({"files": {"file": ("empty.pdf", b"", "application/pdf")}}, 400, "empty"),
        ({"files": {"other": ("a.pdf", b"%PDF-1.7", "application/pdf")}}, 400, "field named `file`"),
        ({"content": b"--xyz\r\nnot multipart at all", "headers": {"content-type": "multipart/form-data; boundary=xyz"}},
         400, "not valid multipart/form-data"),
        ({"content": b"{}", "headers": {"content-type": "application/json"}}, 400, "multipart/form-data"),
    ],
    ids=["not-a-pdf", "empty", "no-file-field", "malformed-multipart", "not-multipart"],
)
def test_bad_uploads_are_4xx_that_say_why(
    client: TestClient, request_kwargs: dict[str, Any], status: int, words: str
) -> None:
    response = client.post("/documents", **request_kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


def test_over_the_size_limit_is_413(backend: Backend, catalog: Path) -> None:
    small = replace(backend, max_upload_bytes=1000)
    with TestClient(create_app(lambda: small), raise_server_exceptions=False) as c:
        response = upload_raw(c, catalog)
    assert response.status_code == 413
    assert "limit" in response.json()["message"] and "POST /uploads" in response.json()["message"]


def upload_raw(client: TestClient, path: Path) -> Any:
    with open(path, "rb") as f:
        return client.post("/documents", files={"file": (path.name, f, "application/pdf")})


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/documents/0123456789abcdef0123456789abcdef", 404, "no document"),
        ("/documents/not-an-id", 404, "32 hex digits"),
        ("/documents/{id}/pages/999", 404, "no page 999"),
        ("/documents/{id}/pages/x", 422, "page_no"),
        ("/documents/{id}/images/999", 404, "no image 999"),
        ("/documents/{id}/audio", 404, "no spoken summary"),
        ("/documents?status=happy", 400, "status must be one of"),
        ("/documents?limit=0", 422, "limit"),
        ("/search", 422, "q"),
        ("/nowhere", 404, "/docs"),
    ],
)
def test_bad_requests_are_4xx_that_say_why(
    client: TestClient, processed: dict[str, Any], path: str, status: int, words: str
) -> None:
    response = client.get(path.format(id=processed["accepted"]["document_id"]))
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


def test_presigned_uploads_are_refused_locally_with_the_reason(client: TestClient) -> None:
    response = client.post("/uploads", json={"file_name": "big.pdf"})
    assert response.status_code == 501 and "POST /documents" in response.json()["message"]


def test_health_openapi_docs_and_console(client: TestClient, processed: dict[str, Any]) -> None:
    assert client.get("/health").json() == {
        "status": "ok", "checks": {"database": "ok", "storage": "ok", "state_machine": "ok"}}
    spec = client.get("/openapi.json").json()
    assert {"/documents", "/documents/{document_id}", "/stats", "/search"} <= set(spec["paths"])
    docs = client.get("/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    console = client.get("/").text
    assert processed["accepted"]["document_id"] in console and "://" not in console  # nothing fetched from elsewhere
    page = client.get(f"/ui/documents/{processed['accepted']['document_id']}").text
    assert "page 1" in page and "What to do" not in page


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def served(backend: Backend) -> Iterator[str]:
    """The application on a loopback port, as `pagemill serve` runs it."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(lambda: backend), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_console_in_a_browser_uploads_sees_it_succeed_and_finds_its_image(served: str, tmp_path: Path) -> None:
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import expect, sync_playwright

    pdf = tmp_path / "browser-catalog.pdf"
    make_catalog(pdf, pages=6, seed=21)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.goto(served + "/")
            # GIVEN the console; WHEN a PDF is dragged from the desktop and dropped on the upload zone
            dropped = page.evaluate_handle(
                """([name, data]) => {
                    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                    const transfer = new DataTransfer();
                    transfer.items.add(new File([bytes], name, { type: "application/pdf" }));
                    return transfer;
                }""",
                [pdf.name, base64.b64encode(pdf.read_bytes()).decode()],
            )
            page.dispatch_event("#upload", "dragover", {"dataTransfer": dropped})
            page.dispatch_event("#upload", "drop", {"dataTransfer": dropped})
            expect(page.locator("#upload-log li.ok")).to_contain_text("accepted", timeout=30_000)
            # THEN its row appears and goes to succeeded without a reload (live progress)
            row = page.locator("#documents tr", has_text="browser-catalog.pdf")
            expect(row.locator("td.status")).to_have_text("succeeded", timeout=180_000)
            # and the document page shows its pages and images
            row.locator("a").click()
            expect(page.locator("#doc-status")).to_have_text("succeeded")
            expect(page.locator("section.page").first).to_be_visible()
            document_id = page.locator("#document").get_attribute("data-id")
            # and search finds one of its images, with a thumbnail that loads
            page.goto(served + "/ui/search?q=product+photo&limit=100")
            hit = page.locator(f"#hits figure.hit:has(a[href='/ui/documents/{document_id}'])").first
            expect(hit).to_be_visible()
            assert hit.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")
        finally:
            browser.close()


def test_console_shows_markup_in_a_document_as_text(client: TestClient, tmp_path: Path) -> None:
    # GIVEN a PDF whose text is HTML (a page's markdown carries it verbatim)
    path = tmp_path / "markup.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), '<img src=x onerror="alert(1)"> <script>alert(2)</script>')
    doc.save(path)
    accepted = upload(client, path)
    assert wait_ended(client, accepted["document_id"])["status"] == "succeeded"
    # WHEN its console page renders THEN the markup is text, never elements
    html = client.get(f"/ui/documents/{accepted['document_id']}").text
    assert "<img src=x" not in html and "<script>alert" not in html
    assert "&lt;img src=x" in html


def test_documents_still_running_when_serve_stops_are_cancelled_and_say_why(
    client: TestClient, engine: LocalEngine, module_database_url: str, tmp_path: Path
) -> None:
    from pagemill_tools.serve import stop_unfinished

    accepted = upload(client, text_pdf(tmp_path / "unfinished.pdf", 200, words="unfinished"))
    # WHEN serve shuts down with it running
    assert stop_unfinished(engine, module_database_url) == [accepted["document_id"]]
    # THEN it is cancelled with the reason, and its execution stopped
    detail = client.get(f"/documents/{accepted['document_id']}").json()
    assert detail["status"] == "cancelled" and "upload it again" in detail["failure"]["message"]
    wait_for_execution = time.monotonic() + 60
    while engine.sfn.describe_execution(executionArn=accepted["execution_arn"])["status"] == "RUNNING":
        assert time.monotonic() < wait_for_execution
        time.sleep(0.2)


def test_a_partial_document_shows_its_warnings_and_can_be_redriven(client: TestClient, tmp_path: Path) -> None:
    from tests.e2e.test_partial import truncated_catalog

    # GIVEN a catalog cut to a third of its bytes (it ends partial: later pages lost their content)
    accepted = upload(client, truncated_catalog(tmp_path))
    detail = wait_ended(client, accepted["document_id"])
    # THEN the document says partial, which pages lost what, and no failure
    assert detail["status"] == "partial" and detail["failure"] is None
    lost = [w for w in detail["warnings"] if w["code"] == "content_lost"]
    assert lost and 10 in lost[0]["pages"]
    assert detail["links"]["redrive"] and "states" in detail["timings"]
    # AND the console lists the warnings
    page = client.get(f"/ui/documents/{accepted['document_id']}").text
    assert "content_lost" in page and "Warnings" in page
    # AND a redrive starts a new execution of the upload
    redriven = client.post(f"/documents/{accepted['document_id']}/redrive")
    assert redriven.status_code == 200 and redriven.json()["execution_arn"].endswith("-r1")
    assert wait_ended(client, accepted["document_id"])["status"] == "partial"
