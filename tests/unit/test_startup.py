"""The local engine imported fast (pagemill_tools.startup)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from pagemill_tools.startup import collection_paused


def test_no_collection_runs_while_paused_and_what_was_made_is_kept_out_of_later_ones() -> None:
    frozen = gc.get_freeze_count()
    collections = gc.get_stats()[0]["collections"]
    try:
        with collection_paused():
            assert not gc.isenabled()
            made = [[i] for i in range(5_000)]  # well past the youngest generation's threshold
            assert gc.get_stats()[0]["collections"] == collections
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(made)
    finally:
        gc.unfreeze()  # the test process's own objects go back to the collector


def _fresh_python(code: str) -> dict:
    """What ``code`` prints as JSON, run in a new interpreter (this one imported moto long ago)."""
    return json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


REGIONS = ("from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend as R; "
           "import gc, json, sys; print(json.dumps({'regions': sorted(r.name for r in R.regions), "
           "'collecting': gc.isenabled(), 'engine': 'pagemill_tools.engine.engine' in sys.modules}))")


def test_the_engine_imported_fast_knows_the_same_regions_and_collects_again_afterwards() -> None:
    plain = _fresh_python(REGIONS)
    fast = _fresh_python("from pagemill_tools.startup import import_engine; import_engine(); " + REGIONS)
    assert fast["regions"] == plain["regions"] and len(plain["regions"]) > 20
    assert fast["collecting"] and fast["engine"]


def test_a_lambda_worker_never_imports_moto() -> None:
    # The workers import the runtime's module to run handlers: moto (and its EC2 models' 0.7 s)
    # belong to the engine's process only.
    imported = _fresh_python("import json, sys, pagemill_tools.engine.lambda_runtime; "
                             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'moto')))")
    assert imported == []
