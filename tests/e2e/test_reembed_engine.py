"""The reembed state machine as synthesized (stacks/reembed.py), run by the local engine on the
reembed bundle's functions: after the model changed (here: the stored vectors are another model's,
one chunk has none after an outage), one execution gives every chunk exactly one vector of the
configured model, builds that model's index and drops the old one's; `pagemill reembed --aws`'s
progress reads the real task events."""

from __future__ import annotations

import time
from pathlib import Path

from pagemill.db.chunk_vectors import build_index, index_exists, models_stored
from pagemill.operate import reembed as on_aws
from pagemill.operate.executions import Stack
from pagemill.text_embed.select import local_embedder
from pagemill_tools.engine.engine import LocalEngine
from tests.e2e.conftest import run_catalog

OLD_MODEL = "an-older-model"


def test_one_reembed_execution_replaces_every_vector_once_and_builds_the_index(
    engine: LocalEngine, db, tmp_path: Path
) -> None:
    run = run_catalog(engine, tmp_path, pages=3)
    assert run.status == "SUCCEEDED"
    # GIVEN vectors of another model, one chunk left without any, and that model's index
    db.execute("update chunks set embedding_model = %s", (OLD_MODEL,))
    db.execute("update chunks set embedding = null, embedding_model = null"
               " where (document_id, chunk_no) = (select document_id, min(chunk_no) from chunks group by 1 limit 1)")
    build_index(db, OLD_MODEL, 256)
    total = db.execute("select count(*) from chunks").fetchone()[0]
    db.execute("create table writes (n int)")
    db.execute("create function count_write() returns trigger language plpgsql as"
               " $$ begin insert into writes values (1); return new; end $$")
    db.execute("create trigger count_write after update of embedding on chunks for each row execute function count_write()")
    # WHEN `pagemill reembed --aws` starts the stack's reembed execution and follows it
    assert engine.reembed_state_machine_arn is not None
    stack = Stack("local", engine.deployment.bucket_name, engine.state_machine_arn, engine.reembed_state_machine_arn)
    arn, started = on_aws.start(engine.sfn, stack)
    progress = on_aws.progress(engine.sfn, arn)
    for _ in range(600):
        if progress.finished:
            break
        time.sleep(0.5)
        progress = on_aws.progress(engine.sfn, arn)
    # THEN it went ReembedBatch → AllReembedded? → BuildChunkIndex and says what it did
    model = local_embedder("wordllama").model
    assert started and progress.status == "SUCCEEDED", progress
    assert (progress.embedded, progress.remaining, progress.model) == (total, 0, model)
    assert progress.index_seconds is not None
    assert engine.visited_states(arn) == ["ReembedBatch", "AllReembedded?", "BuildChunkIndex", "Reembedded"]
    # AND every chunk got exactly one vector of the configured model; its index replaced the old one
    assert db.execute("select count(*) from writes").fetchone()[0] == total
    assert models_stored(db) == {model: total}
    assert index_exists(db, model) and not index_exists(db, OLD_MODEL)
