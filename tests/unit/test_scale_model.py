"""The scale model's arithmetic: bounds scale with the capacity that sets them, and the
bottleneck moves when another limit binds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.scale_model import (
    DOCUMENTED,
    Limits,
    Workload,
    hnsw_build_seconds,
    inputs_from,
    project,
)

# A database and quotas so large that Lambda concurrency binds first.
ROOMY = Limits(lambda_concurrency=100, start_execution_per_s=1e9, state_transitions_per_s=1e9,
               proxy_connections=10**9, db_vcpus=10**6)
WORK = Workload(100_000, pages=10, images=20)


def test_doubling_lambda_concurrency_halves_the_lambda_bound_time() -> None:
    # GIVEN Lambda concurrency is the bottleneck
    before = project(WORK, DOCUMENTED, ROOMY, index="deferred")
    assert before.bottleneck == "Lambda concurrency"
    # WHEN concurrency doubles
    after = project(WORK, DOCUMENTED, replace(ROOMY, lambda_concurrency=200), index="deferred")
    # THEN the Lambda bound halves and stays the bottleneck
    assert after.bounds["Lambda concurrency"] == pytest.approx(before.bounds["Lambda concurrency"] / 2)
    assert after.bottleneck == "Lambda concurrency"
    assert after.wall_s - after.latency_s == pytest.approx((before.wall_s - before.latency_s) / 2)


def test_past_the_next_limit_more_concurrency_stops_helping() -> None:
    # GIVEN StartExecution's rate sits just under what 100 concurrent Lambdas would need
    lambda_bound = project(WORK, DOCUMENTED, ROOMY, index="deferred").bounds["Lambda concurrency"]
    limits = replace(ROOMY, start_execution_per_s=WORK.documents / (lambda_bound * 0.75))
    # WHEN concurrency doubles, then doubles again
    walls = [project(WORK, DOCUMENTED, replace(limits, lambda_concurrency=c), index="deferred") for c in (100, 200, 400)]
    # THEN the first doubling moves the bottleneck to StartExecution, and the second changes nothing
    assert [p.bottleneck for p in walls] == ["Lambda concurrency", "StartExecution rate", "StartExecution rate"]
    assert walls[1].wall_s == pytest.approx(walls[2].wall_s)
    assert walls[1].wall_s < walls[0].wall_s


def test_online_hnsw_inserts_bind_on_a_small_database_and_scale_with_its_cores() -> None:
    small = project(WORK, DOCUMENTED, Limits(db_vcpus=2), index="online")
    large = project(WORK, DOCUMENTED, Limits(db_vcpus=4), index="online")
    database = "database: COPY + HNSW inserts"
    assert small.bottleneck == database
    assert large.bounds[database] == pytest.approx(small.bounds[database] / 2)
    rows = WORK.documents * WORK.images
    m = DOCUMENTED
    assert small.bounds[database] == pytest.approx(rows / (m.copy_image_rows_per_s * 2) + rows / (m.hnsw_insert_rows_per_s * 2))


def test_deferred_build_costs_the_measured_rate_at_the_measured_size() -> None:
    m = DOCUMENTED
    assert hnsw_build_seconds(m.hnsw_rows, m, m.hnsw_build_cores) == pytest.approx(m.hnsw_rows / m.hnsw_build_rows_per_s)
    # Beyond the partition size the cost per row stops growing: twice the rows, twice the time.
    assert hnsw_build_seconds(4_000_000, m, 2) == pytest.approx(2 * hnsw_build_seconds(2_000_000, m, 2))


def test_many_images_go_to_the_gpu_and_its_instances_bound_them() -> None:
    heavy = Workload(1_000, pages=500, images=200)
    one = project(heavy, DOCUMENTED, replace(ROOMY, gpu_instances=1), index="deferred")
    two = project(heavy, DOCUMENTED, replace(ROOMY, gpu_instances=2), index="deferred")
    assert two.bounds["GPU embed"] == pytest.approx(one.bounds["GPU embed"] / 2)
    assert "GPU embed" not in project(WORK, DOCUMENTED, ROOMY, index="deferred").bounds


def test_missing_measurements_fall_back_to_the_documented_figures_and_say_so() -> None:
    m = inputs_from({})
    assert m.function_seconds == DOCUMENTED.function_seconds
    assert set(m.sources.values()) == {"RESULTS.md"}
