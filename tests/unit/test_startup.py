"""The `pagemill` command's start-up (pagemill_tools.startup)."""

from __future__ import annotations

import gc

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
