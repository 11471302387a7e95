"""End to end through the local engine: the synthesized state machine on moto, real handlers in
worker processes, real PostgreSQL. Assertions are on rows, objects and execution history."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

import pymupdf
import pytest

from pagemill import keys
from pagemill.pdf.completeness import word_loss
from pagemill_tools.engine.engine import DocumentRun, LocalEngine
from pagemill_tools.engine.synth import synthesize
from pagemill_tools.sample import make_catalog
from pagemill_tools.scans import add_scan, known_text

pytestmark = pytest.mark.heavy(30)


def run_all(engine: LocalEngine, paths: list[Path], keys: list[str] | None = None) -> list[DocumentRun]:
    runs = [engine.submit(p, key=(keys[i] if keys else None)) for i, p in enumerate(paths)]
    engine.wait(runs)
    return runs


def counts(db, document_id: str) -> tuple[int, int, int]:
    return db.execute(
        "select (select count(*) from pages where document_id = %(d)s),"
        " (select count(*) from chunks where document_id = %(d)s),"
        " (select count(*) from images where document_id = %(d)s)",
        {"d": document_id},
    ).fetchone()


def document(db, document_id: str) -> dict:
    cur = db.execute("select * from documents where id = %s", (document_id,))
    row = cur.fetchone()
    return dict(zip([c.name for c in cur.description], row)) if row else {}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("catalog") / "catalog.pdf"
    return path, make_catalog(path)


def test_sample_catalog_goes_through_every_state(engine: LocalEngine, db, catalog) -> None:
    # GIVEN the generated catalog (40+ pages, 30+ distinct images, a logo on every page)
    path, truth = catalog
    # WHEN it is uploaded and its execution runs
    (run,) = run_all(engine, [path])
    # THEN the execution succeeded through Plan → ExtractPages → Write
    assert run.status == "SUCCEEDED", document(db, run.document_id)
    visited = engine.visited_states(run.execution_arn)
    for state in ("Plan", "ExtractPages", "CollectImages", "Write", "Done"):
        assert state in visited
    assert "RecordFailure" not in visited
    # AND PostgreSQL holds one row per page, every distinct image once, the logo on every page
    doc = document(db, run.document_id)
    assert doc["status"] == "succeeded" and doc["page_count"] == truth.page_count
    pages, chunks, images = counts(db, run.document_id)
    assert pages == truth.page_count == pymupdf.open(path).page_count
    assert images == truth.distinct_images
    logo_pages = db.execute(
        "select page_nos from images where document_id = %s and sha256 = %s", (run.document_id, truth.logo_sha256)
    ).fetchone()[0]
    assert logo_pages == list(range(1, truth.page_count + 1))
    # AND every page with text is covered by a chunk, and chunks are numbered without gaps
    text_pages = {r[0] for r in db.execute(
        "select page_no from pages where document_id = %s and length(trim(markdown)) > 0", (run.document_id,))}
    spans = db.execute(
        "select chunk_no, first_page, last_page from chunks where document_id = %s order by chunk_no",
        (run.document_id,),
    ).fetchall()
    assert [s[0] for s in spans] == list(range(chunks))
    covered = {p for _, a, b in spans for p in range(a, b + 1)}
    assert text_pages <= covered
    # AND every heading the generator placed is in the markdown
    markdown = "\n".join(r[0] for r in db.execute(
        "select markdown from pages where document_id = %s order by page_no", (run.document_id,)))
    for heading in truth.headings:
        assert heading in markdown
    # AND the image objects are in S3 where the rows say
    for (key,) in db.execute("select s3_key from images where document_id = %s", (run.document_id,)):
        assert engine.s3.head_object(Bucket=engine.deployment.bucket_name, Key=key)["ContentLength"] > 0
    # AND every state's seconds are recorded, ExtractPages' from its map items' spans (kept in S3:
    # the map keeps no results) and the others' from the states' results
    assert doc["timings"]["states"]["ExtractPages"] > 0
    assert {"Plan", "CollectImages", "Embed", "EmbedChunks", "Write"} <= set(doc["timings"]["states"])


def test_same_bytes_again_is_a_duplicate_and_changes_nothing(engine: LocalEngine, db, catalog) -> None:
    # GIVEN the catalog already processed (by the previous test, or now)
    path, truth = catalog
    (first,) = run_all(engine, [path])
    before = counts(db, first.document_id)
    # WHEN the same bytes arrive under another key
    (again,) = run_all(engine, [path], keys=["uploads/renamed/copy-of-catalog.pdf"])
    # THEN it is the same document, Plan reports the duplicate and nothing is rewritten
    assert again.document_id == first.document_id
    assert again.status == "SUCCEEDED"
    assert "AlreadyProcessed" in engine.visited_states(again.execution_arn)
    assert "ExtractPages" not in engine.visited_states(again.execution_arn)
    assert counts(db, again.document_id) == before
    sources = db.execute("select key from sources where document_id = %s order by key", (first.document_id,)).fetchall()
    assert ("uploads/renamed/copy-of-catalog.pdf",) in sources and ("uploads/catalog.pdf",) in sources


def test_the_watch_wakes_when_an_execution_ends_not_when_its_poll_is_due(engine: LocalEngine, tmp_path: Path) -> None:
    # GIVEN a one-page document, watched with a poll far longer than its run
    path = tmp_path / "quick.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "a run that ends quickly")
    doc.save(path)
    run = engine.submit(path)
    watch = threading.Thread(target=engine.wait, args=([run],), kwargs={"poll_seconds": 600.0}, daemon=True)
    # WHEN it is watched to its end
    watch.start()
    watch.join(timeout=120)
    # THEN the watch returned with the run ended, long before its poll was due: the execution's end woke it
    assert not watch.is_alive()
    assert run.status == "SUCCEEDED"


def test_redelivered_event_starts_nothing_new(engine: LocalEngine, tmp_path: Path) -> None:
    # GIVEN an uploaded object whose execution ran
    path = tmp_path / "small.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "redelivery")
    doc.save(path)
    (run,) = run_all(engine, [path])
    # WHEN EventBridge delivers the same Object Created event twice more
    again = [engine.start_event(run.source) for _ in range(2)]
    # THEN both name the existing execution and no new one exists
    assert again == [run.execution_arn, run.execution_arn]
    executions = engine.sfn.list_executions(stateMachineArn=engine.state_machine_arn)["executions"]
    assert sum(e["executionArn"] == run.execution_arn for e in executions) == 1


def test_a_scanned_page_is_read_by_ocr_in_extract_batch_s_image_function(
    engine: LocalEngine, engine_home: Path, db, tmp_path: Path
) -> None:
    # GIVEN a scan of known text, upside down, with no text layer
    text = known_text(7, 80)
    doc = pymupdf.open()
    add_scan(doc, text, dpi=150, rotation=180)
    path = tmp_path / "scan.pdf"
    doc.save(path)
    # WHEN it runs through the engine
    (run,) = run_all(engine, [path])
    # THEN its page is the OCR text, upright, and says so
    assert run.status == "SUCCEEDED", document(db, run.document_id)
    markdown, source, confidence = db.execute(
        "select markdown, text_source, ocr_confidence from pages where document_id = %s", (run.document_id,)
    ).fetchone()
    assert source == "ocr" and confidence > 0.8
    assert 1 - word_loss(text, markdown).fraction >= 0.9
    # AND the batch ran in ExtractBatch as synthesized for AWS: the container image with OCR,
    # whose handler the engine runs from lambdas/extract
    template, _ = synthesize(engine_home / "synth")  # the engine's synthesis, from the cache
    resources = json.loads(template.read_text())["Resources"]
    assert engine.runtime is not None
    batches = {name for name, _, _ in engine.runtime.invocations if "ExtractBatch" in name}
    assert batches and all(resources[name]["Properties"]["PackageType"] == "Image" for name in batches)


def _encrypted(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    return path


def _truncated(path: Path, good: Path) -> Path:
    """An interrupted download of a PDF whose objects live in object streams (as most modern
    producers write them): what is left has no page tree at all."""
    whole = path.with_suffix(".whole")
    pymupdf.open(good).save(whole, garbage=3, deflate=True, use_objstms=1)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_INPUTS = {
    "encrypted.pdf": ("EncryptedPdf", "password"),
    "zero.pdf": ("EmptyFile", "empty"),
    "notes.pdf": ("NotAPdf", "not a PDF"),
    "truncated.pdf": ("NoPages", "truncated"),
}


def test_bad_inputs_fail_clearly_and_leave_others_alone(engine: LocalEngine, db, tmp_path: Path, catalog) -> None:
    # GIVEN one good document beside an encrypted, an empty, a not-a-PDF and a truncated file
    good = tmp_path / "good.pdf"
    doc = pymupdf.open()
    for i in range(3):
        doc.new_page().insert_text((72, 72), f"good page {i + 1}")
    doc.save(good)
    paths = [
        good,
        _encrypted(tmp_path / "encrypted.pdf"),
        tmp_path / "zero.pdf",
        tmp_path / "notes.pdf",
        _truncated(tmp_path / "truncated.pdf", catalog[0]),
    ]
    paths[2].write_bytes(b"")
    paths[3].write_text("These are meeting notes, saved with the wrong extension.\n")
    # WHEN they go through the pipeline in one run
    runs = run_all(engine, paths)
    by_name = {r.path.name: r for r in runs}
    # THEN the good one succeeded
    assert by_name["good.pdf"].status == "SUCCEEDED"
    assert counts(db, by_name["good.pdf"].document_id)[0] == 3
    # AND, a document of one batch, without a map run (an account holds at most 1,000 open ones),
    # its images collected by the invocation that extracted it (no CollectImages)
    good = by_name["good.pdf"].execution_arn
    visited = engine.visited_states(good)
    assert "ExtractOnlyBatch" in visited and not {"ExtractPages", "CollectImages"} & set(visited)
    assert engine.sfn.list_map_runs(executionArn=good)["mapRuns"] == []
    # AND its states' seconds travelled in their results: S3 holds only what the stages hand on (no
    # timing objects, no image list for a document without images)
    good_id = by_name["good.pdf"].document_id
    assert {"Plan", "ExtractPages", "EmbedChunks", "Write"} <= set(document(db, good_id)["timings"]["states"])
    listed = engine.s3.list_objects_v2(Bucket=engine.deployment.bucket_name, Prefix=keys.document_prefix(good_id))
    assert sorted(item["Key"] for item in listed["Contents"]) == sorted([
        keys.manifest_key(good_id), keys.batch_result_key(good_id, 1, 3), keys.chunk_vectors_key(good_id)
    ])
    # AND every bad one failed through RecordFailure with a reason a person understands and no rows
    for name in ("encrypted.pdf", "zero.pdf", "notes.pdf", "truncated.pdf"):
        run = by_name[name]
        assert run.status == "FAILED", name
        assert "RecordFailure" in engine.visited_states(run.execution_arn)
        row = document(db, run.document_id)
        assert row["status"] == "failed", name
        assert row["error"] and "\n" not in row["error"], name
        assert row["failed_state"] == "Plan", name
        assert counts(db, run.document_id) == (0, 0, 0), name
        if name in BAD_INPUTS:
            error_class, words = BAD_INPUTS[name]
            assert row["error_class"] == error_class
            assert words.lower() in row["error"].lower()


def test_a_worker_killed_mid_batch_is_retried_and_nothing_is_duplicated(
    engine: LocalEngine, db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the first ExtractBatch invocation's worker is killed with SIGKILL while it works
    runtime = engine.runtime
    assert runtime is not None
    invoke = runtime.invoke
    killed = threading.Event()

    def kill_workers_until(done: threading.Event) -> None:
        while not done.wait(0.1):
            for pid in runtime.worker_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.set()

    def invoke_and_kill_the_first_batch(function: str, payload: bytes):  # noqa: ANN202 - Invocation
        if "ExtractBatch" not in function or killed.is_set():
            return invoke(function, payload)
        done = threading.Event()
        killer = threading.Thread(target=kill_workers_until, args=(done,), daemon=True)
        killer.start()
        try:
            return invoke(function, payload)
        finally:
            done.set()
            killer.join()

    monkeypatch.setattr(runtime, "invoke", invoke_and_kill_the_first_batch)
    path = tmp_path / "killed.pdf"
    truth = make_catalog(path, pages=30, seed=31)
    (run,) = run_all(engine, [path])
    # THEN the crash was Runtime.ExitError, the batch was retried and the document succeeded
    assert killed.is_set()
    batches = [error for name, _, error in runtime.invocations if "ExtractBatch" in name]
    assert "Runtime.ExitError" in batches
    assert run.status == "SUCCEEDED", run
    # AND each page, chunk and image is there once
    pages, chunks, images = counts(db, run.document_id)
    assert (pages, images) == (truth.page_count, truth.distinct_images)
    assert db.execute(
        "select count(*) = count(distinct page_no) from pages where document_id = %s", (run.document_id,)
    ).fetchone() == (True,)
    assert chunks > 0
