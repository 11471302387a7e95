"""Projected wall time, cost and bottleneck of pagemill on AWS for 1k / 100k / 500k documents, from
the figures the benchmarks measured here and AWS's documented limits and prices.

Every resource the documents share is a throughput bound: the work it has to do divided by its
capacity (Lambda concurrency, Step Functions' StartExecution and state-transition rates, the GPU
tasks, RDS Proxy connections, the database's COPY and HNSW work). Documents stream through all
of them at once, so the wall time is the largest bound plus one document's latency, and the
largest bound is the bottleneck. The HNSW index is costed two ways: maintained on every insert
(what migration 0002 does today) and built after load per partition (bench/bench_hnsw.py).

    python -m bench.scale_model [--pages 10] [--images 20] [--lambda-concurrency 1000] [--chunks 1000000] ...

It also costs chunk embeddings per million chunks: Titan by its price per token and the tokens a
chunk of the corpus has (bench_chunk_tokens), the offline models by Lambda GB-seconds at their
measured speed (bench_retrieval).

Measured inputs come from build/bench/measured.json (written by bench_db_write, bench_hnsw and
bench_e2e); any that is missing falls back to the figure recorded in bench/RESULTS.md, and the
output says which. CPU seconds measured on the 2-core development machine are taken as Lambda
vCPU seconds: an assumption (Lambda's x86 vCPUs are of the same class, but not measured here).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bench.inputs import MEASURED, load

# --- documented AWS limits (us-east-1 defaults) ---------------------------------------------------
# Lambda: "At 1,769 MB, a function has the equivalent of one vCPU"; memory 128-10,240 MB, at most
# 6 vCPUs. https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html
MB_PER_VCPU = 1769
MAX_VCPUS = 6
# Lambda concurrent executions per account and region, default 1,000 (raisable).
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
LAMBDA_CONCURRENCY = 1000
# Step Functions, Standard workflows, us-east-1: StartExecution refill 300/s (bucket 1,300);
# StateTransition refill 5,000/s (bucket 5,000; new accounts start lower); Distributed Map up to
# 10,000 parallel child executions. https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
START_EXECUTION_PER_S = 300
STATE_TRANSITIONS_PER_S = 5000
MAP_CHILDREN_MAX = 10_000
# RDS Proxy opens at most MaxConnectionsPercent of the instance's max_connections
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy-connections.html);
# stacks/database.py sets max_connections 200 and 80 %.
PROXY_CONNECTIONS = 200 * 80 // 100

# --- the stack's settings (stacks/functions.py, stacks/config.py) ---------------------------------
MEMORY_MB = {"Plan": 2048, "ExtractBatch": 3008, "CollectImages": 1024, "Embed": 3008, "Write": 1024}
BATCH_PAGES = 25
MAP_CONCURRENCY = 40
GPU_MIN_IMAGES = 200
GPU_INSTANCES = 2
DB_VCPUS = 2  # db.t4g.medium, the stack's default (burstable: 20 % baseline per vCPU)

# --- assumptions, not measured here ---------------------------------------------------------------
# g5.xlarge (A10G, 4 vCPUs): ViT-B/32 inference is thousands of images/s in fp16, so the task is
# bound by JPEG decode + preprocess on its 4 vCPUs: 141 images/s per core measured here
# (bench/RESULTS.md, CLIP) x 4 = ~560; taken as 500. No GPU was measured for this figure.
GPU_IMAGES_PER_S = 500.0
# Scale-out from zero instances: EC2 launch + ECS agent + image pull, a few minutes.
GPU_COLD_START_S = 300.0
# One Embed task per document: on a warm instance with the image cached, container start plus
# the CUDA session and model load (locally the CPU worker's start is most of EmbedOnGpu's 2.6 s).
GPU_TASK_START_S = 15.0
GPU_SCALE_IN_TAIL_S = 900.0  # instances stay up this long after the last task (billed)
# States entered by a child execution of ExtractPages (its ExtractBatch task): not in the local
# history, which records the parent's states only.
TRANSITIONS_PER_BATCH = 2
# Largest HNSW partition: its graph must fit maintenance_work_mem for a fast build.
PARTITION_ROWS = 1_000_000

# --- prices, us-east-1, on-demand (check before relying on them) -----------------------------------
# https://aws.amazon.com/lambda/pricing/ (x86), https://aws.amazon.com/step-functions/pricing/,
# https://aws.amazon.com/ec2/pricing/on-demand/ (g5.xlarge), https://aws.amazon.com/rds/postgresql/pricing/
# (db.t4g.medium single-AZ), https://aws.amazon.com/rds/proxy/pricing/, https://aws.amazon.com/s3/pricing/
LAMBDA_GB_S = 0.0000166667
LAMBDA_REQUEST = 0.20 / 1e6
TRANSITION = 0.025 / 1000
GPU_HOUR = 1.006
DB_HOUR = 0.065
PROXY_VCPU_HOUR = 0.015
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000

# --- chunk embeddings (issue 13) --------------------------------------------------------------------
# Titan Text Embeddings V2, on demand, us-east-1: $0.02 per million input tokens ($0.00002 per 1k).
# https://aws.amazon.com/bedrock/pricing/
TITAN_PER_1K_TOKENS = 0.00002
# EmbedChunks (stacks/functions.py EMBED_CHUNKS): 1,024 MB, Titan requests 4 in flight
# (Settings.titan_concurrency). Assumed, not measured (no AWS account): 100 ms a request.
EMBED_CHUNKS_MB = 1024
TITAN_IN_FLIGHT = 4
TITAN_REQUEST_S = 0.1
# e5 runs ONNX Runtime on every vCPU it gets: costed on a 1,769 MB (one vCPU) function.
E5_MB = MB_PER_VCPU

# --- the seeds' figures (issue 6) -------------------------------------------------------------------
SEEDS = {
    "500k documents": "a week on one machine, about a day on 10",
    "one 200-image PDF": "35-53 minutes",
    "500 pages": "about 5 minutes",
    "rows into PostgreSQL": "row by row 2 minutes where bulk took 5 s (24x)",
}


@dataclass(frozen=True)
class Inputs:
    """Per-unit costs measured on the development machine (seconds are one core's)."""

    # Invocation seconds of a document's calls to each function, as a + b x pages: the line
    # through bench_e2e's small and large documents.
    function_seconds: dict[str, tuple[float, float]]
    clip_images_per_s_per_vcpu: float  # ViT-B/32 on CPU, Embed stage end to end
    copy_image_rows_per_s: float  # one connection, COPY binary, 512-d vector
    hnsw_insert_rows_per_s: float  # one connection into an HNSW-indexed table, at hnsw_rows
    hnsw_build_rows_per_s: float  # CREATE INDEX, raised maintenance_work_mem, on hnsw_build_cores
    hnsw_rows: int
    hnsw_build_cores: int
    hnsw_mb_per_million: float  # index size
    local_500_pages_s: float  # bench_e2e's document through the local pipeline
    local_pages: int
    local_images: int
    transitions_per_document: int  # states a document's execution enters, its map's children aside
    sources: dict[str, str] = field(default_factory=dict)


# Figures of the runs recorded in bench/RESULTS.md (2026-11-23), used for any input
# build/bench/measured.json lacks.
DOCUMENTED = Inputs(
    function_seconds={"Plan": (0.042, 0.00002), "ExtractBatch": (0.074, 0.0248), "CollectImages": (0.02, 0.00027),
                      "Write": (0.038, 0.00085)},
    clip_images_per_s_per_vcpu=32.9 / 2,
    copy_image_rows_per_s=25_391, hnsw_insert_rows_per_s=526, hnsw_build_rows_per_s=50_000 / 27.5,
    hnsw_rows=50_000, hnsw_build_cores=2, hnsw_mb_per_million=2600, local_500_pages_s=10.3,
    local_pages=500, local_images=200, transitions_per_document=13,
)


@dataclass(frozen=True)
class EmbeddingInputs:
    tokens_per_chunk: float  # BPE tokens of a 1,500-character chunk, over the corpus (bench_chunk_tokens)
    chunks_per_s: dict[str, float]  # one thread (bench_retrieval); e5's per vCPU
    sources: dict[str, str] = field(default_factory=dict)


# bench/RESULTS.md's figures: tokens per chunk of the 2026-12-02 corpus run, the quiet speeds of the
# retrieval section.
DOCUMENTED_EMBEDDING = EmbeddingInputs(tokens_per_chunk=416, chunks_per_s={"wordllama": 2786, "e5": 3.2})


def embedding_inputs_from(measured: Mapping[str, Any]) -> EmbeddingInputs:
    tokens, speeds = measured.get("chunk_tokens"), (measured.get("retrieval") or {}).get("chunks_per_second_one_thread")
    return EmbeddingInputs(
        tokens_per_chunk=tokens["bpe_tokens_per_chunk"] if tokens else DOCUMENTED_EMBEDDING.tokens_per_chunk,
        chunks_per_s={**DOCUMENTED_EMBEDDING.chunks_per_s, **(speeds or {})},
        sources={"tokens_per_chunk": "measured" if tokens else "RESULTS.md",
                 "chunks_per_s": "measured" if speeds else "RESULTS.md"},
    )


@dataclass(frozen=True)
class EmbeddingCost:
    embedder: str
    lambda_s: float  # function seconds
    gb_s: float
    model_usd: float  # Bedrock's per-token price; 0 for the models that run in the function

    @property
    def lambda_usd(self) -> float:
        return self.gb_s * LAMBDA_GB_S

    @property
    def usd(self) -> float:
        return self.lambda_usd + self.model_usd


def embedding_costs(chunks: int, e: EmbeddingInputs) -> list[EmbeddingCost]:
    """What embedding ``chunks`` chunks costs with each embedder. wordllama is one thread: at
    EmbedChunks' 1,024 MB it gets 0.58 of a vCPU. Titan's function mostly waits on its requests."""
    wordllama_s = chunks / (e.chunks_per_s["wordllama"] * min(1.0, vcpus(EMBED_CHUNKS_MB)))
    e5_s = chunks / (e.chunks_per_s["e5"] * vcpus(E5_MB))
    titan_s = chunks * TITAN_REQUEST_S / TITAN_IN_FLIGHT
    return [
        EmbeddingCost("wordllama", wordllama_s, wordllama_s * EMBED_CHUNKS_MB / 1024, 0.0),
        EmbeddingCost("e5", e5_s, e5_s * E5_MB / 1024, 0.0),
        EmbeddingCost("titan", titan_s, titan_s * EMBED_CHUNKS_MB / 1024,
                      chunks * e.tokens_per_chunk / 1000 * TITAN_PER_1K_TOKENS),
    ]


def inputs_from(measured: Mapping[str, Any]) -> Inputs:
    """The measured figures where present, the documented ones elsewhere; ``sources`` says which."""
    found: dict[str, Any] = {}
    e2e, db, hnsw = measured.get("e2e"), measured.get("db_write"), measured.get("hnsw")
    if e2e:
        small, large = e2e["documents"]
        found.update(
            function_seconds={name: _line(small, large, name) for name in DOCUMENTED.function_seconds},
            local_500_pages_s=large["wall_s"], local_pages=large["pages"], local_images=e2e["images"],
            transitions_per_document=large["transitions"],
        )
    if db:
        found["copy_image_rows_per_s"] = db["image_rows_per_s"]
    if hnsw and hnsw["bulk"]["vector"]["build_s"]:
        bulk = hnsw["bulk"]
        found.update(
            hnsw_insert_rows_per_s=bulk["insert_at_full_rows_per_s"], hnsw_rows=hnsw["rows"],
            hnsw_build_rows_per_s=hnsw["rows"] / bulk["vector"]["build_s"], hnsw_build_cores=hnsw["machine"]["cpus"],
            hnsw_mb_per_million=bulk["vector"]["mb"] / hnsw["rows"] * 1e6,
        )
    sources = {name: ("measured" if name in found else "RESULTS.md") for name in Inputs.__dataclass_fields__}
    sources.pop("sources")
    return replace(DOCUMENTED, **found, sources=sources)


def _line(small: Mapping[str, Any], large: Mapping[str, Any], function: str) -> tuple[float, float]:
    """(a, b) of seconds = a + b x pages through the two documents' total seconds in ``function``."""
    (p0, s0), (p1, s1) = ((d["pages"], d["functions"].get(function, (0, 0.0))[1]) for d in (small, large))
    b = max(0.0, (s1 - s0) / (p1 - p0))
    return s0 - b * p0, b


@dataclass(frozen=True)
class Limits:
    lambda_concurrency: int = LAMBDA_CONCURRENCY
    start_execution_per_s: float = START_EXECUTION_PER_S
    state_transitions_per_s: float = STATE_TRANSITIONS_PER_S
    proxy_connections: int = PROXY_CONNECTIONS
    db_vcpus: int = DB_VCPUS
    db_hour: float = DB_HOUR
    gpu_instances: int = GPU_INSTANCES
    gpu_images_per_s: float = GPU_IMAGES_PER_S
    gpu_min_images: int = GPU_MIN_IMAGES
    map_concurrency: int = MAP_CONCURRENCY


@dataclass(frozen=True)
class Workload:
    documents: int
    pages: int = 10  # per document
    images: int = 20  # distinct images per document


@dataclass(frozen=True)
class Projection:
    workload: Workload
    index: str  # "online" (HNSW maintained per insert) or "deferred" (built per partition after load)
    bounds: dict[str, float]  # resource: seconds it needs for the whole workload
    latency_s: float  # one document alone, start to Write
    cost: dict[str, float]  # USD by service

    @property
    def bottleneck(self) -> str:
        return max(self.bounds, key=self.bounds.__getitem__)

    @property
    def runner_up(self) -> str:
        return sorted(self.bounds, key=self.bounds.__getitem__)[-2]

    @property
    def wall_s(self) -> float:
        return self.latency_s + self.bounds[self.bottleneck]


def vcpus(memory_mb: int) -> float:
    return min(MAX_VCPUS, memory_mb / MB_PER_VCPU)


def lambda_seconds(w: Workload, m: Inputs, limits: Limits) -> dict[str, float]:
    """Seconds of each function per document. Extraction is one thread (PyMuPDF), so it gains
    nothing past one vCPU and slows below it; ONNX Runtime uses every vCPU it gets."""
    seconds = {name: a + b * w.pages for name, (a, b) in m.function_seconds.items()}
    seconds["ExtractBatch"] /= min(1.0, vcpus(MEMORY_MB["ExtractBatch"]))
    on_gpu = w.images >= limits.gpu_min_images
    seconds["Embed"] = 0.0 if on_gpu else w.images / (m.clip_images_per_s_per_vcpu * vcpus(MEMORY_MB["Embed"]))
    return seconds


def batches(w: Workload) -> int:
    return math.ceil(w.pages / BATCH_PAGES)


def transitions(w: Workload, m: Inputs) -> int:
    # A document of one batch runs ExtractOnlyBatch in place of the ExtractPages map (no children),
    # which collects its images too (no CollectImages state); the measured document has both.
    if batches(w) == 1:
        return m.transitions_per_document - 1
    return m.transitions_per_document + TRANSITIONS_PER_BATCH * batches(w)


def project(w: Workload, m: Inputs, limits: Limits, *, index: str) -> Projection:
    per_doc = lambda_seconds(w, m, limits)
    rows = w.documents * w.images
    db_cores = limits.db_vcpus
    bounds = {
        "Lambda concurrency": w.documents * sum(per_doc.values()) / limits.lambda_concurrency,
        "StartExecution rate": w.documents / limits.start_execution_per_s,
        "state transitions": w.documents * transitions(w, m) / limits.state_transitions_per_s,
        # Plan and Write hold a proxy connection for their duration.
        "RDS Proxy connections": w.documents * (per_doc["Plan"] + per_doc["Write"]) / limits.proxy_connections,
    }
    if w.images >= limits.gpu_min_images:
        # One task per document holds one instance's GPU for its start and its images.
        bounds["GPU embed"] = w.documents * (GPU_TASK_START_S + w.images / limits.gpu_images_per_s) / limits.gpu_instances
    # COPY and the index share the database's cores. One COPY keeps one backend (one core) busy;
    # concurrent inserts into one HNSW index scale with backends, at best one core each.
    copy_s = rows / (m.copy_image_rows_per_s * db_cores)
    if index == "online":
        bounds["database: COPY + HNSW inserts"] = copy_s + rows / (m.hnsw_insert_rows_per_s * db_cores)
    else:
        bounds["database: COPY + HNSW build"] = copy_s + hnsw_build_seconds(rows, m, db_cores)
    latency = one_document_latency(w, m, limits)
    return Projection(w, index, bounds, latency, cost(w, m, limits, per_doc, bounds))


def hnsw_build_seconds(rows: int, m: Inputs, db_cores: int) -> float:
    """Partitions of at most PARTITION_ROWS, each built once after its load. HNSW's build cost per
    row grows with the log of the graph's size; parallel build scales with the cores."""
    if rows == 0:
        return 0.0
    partition = min(rows, PARTITION_ROWS)
    growth = math.log(partition) / math.log(m.hnsw_rows)
    return rows / m.hnsw_build_rows_per_s * growth * m.hnsw_build_cores / db_cores


def one_document_latency(w: Workload, m: Inputs, limits: Limits) -> float:
    """Start to Write of a document with the pipeline to itself: batches run side by side up to
    the map's concurrency, then Embed, then Write."""
    per_doc = lambda_seconds(w, m, limits)
    waves = math.ceil(batches(w) / min(limits.map_concurrency, MAP_CHILDREN_MAX))
    extract = per_doc["ExtractBatch"] / batches(w) * waves
    if w.images >= limits.gpu_min_images:
        embed = GPU_COLD_START_S + GPU_TASK_START_S + w.images / limits.gpu_images_per_s
    else:
        embed = per_doc["Embed"]
    return per_doc["Plan"] + extract + per_doc["CollectImages"] + embed + per_doc["Write"]


def cost(w: Workload, m: Inputs, limits: Limits, per_doc: dict[str, float], bounds: dict[str, float]) -> dict[str, float]:
    gb_s = sum(per_doc[name] * MEMORY_MB[name] / 1024 for name in per_doc)
    # Trigger (its seconds are negligible), Plan, batches, CollectImages (a one-batch document's
    # batch collects its images itself), Embed, Write
    invocations = 4 + batches(w) + (batches(w) > 1)
    wall_h = max(bounds.values()) / 3600
    gpu = 0.0
    if "GPU embed" in bounds:
        gpu = (bounds["GPU embed"] + GPU_COLD_START_S + GPU_SCALE_IN_TAIL_S) / 3600 * GPU_HOUR * limits.gpu_instances
    # upload, manifest, image list (with images); batch results; images
    objects = 2 + (w.images > 0) + batches(w) + w.images
    return {
        "Lambda": w.documents * (gb_s * LAMBDA_GB_S + invocations * LAMBDA_REQUEST),
        "Step Functions": w.documents * transitions(w, m) * TRANSITION,
        "GPU": gpu,
        # The database and proxy run anyway; what the run adds is its hours.
        "RDS + Proxy": wall_h * (limits.db_hour + PROXY_VCPU_HOUR * max(2, limits.db_vcpus)),
        "S3 requests": w.documents * objects * (S3_PUT + 2 * S3_GET),
    }


# --- report ---------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def print_projections(projections: list[Projection]) -> None:
    print(f"{'documents':>10} {'HNSW':<9}{'wall':>10}  {'bottleneck':<32}{'then':<32}{'USD':>9}{'USD/1k docs':>12}")
    for p in projections:
        usd = sum(p.cost.values())
        print(f"{p.workload.documents:>10,} {p.index:<9}{duration(p.wall_s):>10}  {p.bottleneck:<32}"
              f"{p.runner_up:<32}{usd:>9,.0f}{usd / p.workload.documents * 1000:>12.2f}")


def print_bounds(projections: list[Projection]) -> None:
    names = sorted({n for p in projections for n in p.bounds}, key=lambda n: -max(p.bounds.get(n, 0) for p in projections))
    print(f"{'seconds each resource needs':<32}" + "".join(f"{f'{p.workload.documents:,} {p.index}':>18}" for p in projections))
    for name in names:
        cells = "".join(f"{p.bounds[name]:>18,.0f}" if name in p.bounds else f"{'-':>18}" for p in projections)
        print(f"{name:<32}{cells}")
    print(f"{'+ one document latency':<32}" + "".join(f"{p.latency_s:>18,.1f}" for p in projections))


def print_seeds(m: Inputs, limits: Limits, big: Projection, measured: Mapping[str, Any]) -> None:
    single = Workload(1, pages=m.local_pages, images=m.local_images)
    db = measured.get("db_write", {})
    copy, per_row = db.get("image_rows_per_s"), db.get("image_rows_per_s_one_insert_per_row")
    rows = (f"row by row {per_row:,.0f} rows/s, COPY binary {copy:,.0f} ({copy / per_row:.1f}x), 512-d vectors"
            if copy and per_row else "run bench_db_write")
    print(f"{'':<22}{'seeds':<48}pagemill")
    print(f"{'500k documents':<22}{SEEDS['500k documents']:<48}{duration(big.wall_s)} on AWS, projected "
          f"({big.index} HNSW, {big.workload.pages} pages, {big.workload.images} images each)")
    local = f"{duration(m.local_500_pages_s)} locally on 2 cores, {m.local_pages} pages with {m.local_images} images"
    aws = duration(one_document_latency(single, m, limits))
    print(f"{'one 200-image PDF':<22}{SEEDS['one 200-image PDF']:<48}{local}; AWS: {aws} incl. GPU cold start")
    print(f"{'500 pages':<22}{SEEDS['500 pages']:<48}{local}")
    print(f"{'rows into PostgreSQL':<22}{SEEDS['rows into PostgreSQL']:<48}{rows}")


def print_embedding_costs(chunks: int, e: EmbeddingInputs) -> None:
    print(f"chunk embeddings, {chunks:,} chunks: {e.tokens_per_chunk:,.0f} tokens a chunk ({e.sources['tokens_per_chunk']}), "
          f"wordllama {e.chunks_per_s['wordllama']:,.0f} and e5 {e.chunks_per_s['e5']:,.1f} chunks/s on one core "
          f"({e.sources['chunks_per_s']}); Titan ${TITAN_PER_1K_TOKENS * 1000:.2f} per million tokens, "
          f"{TITAN_REQUEST_S * 1000:.0f} ms a request with {TITAN_IN_FLIGHT} in flight (assumed)")
    print(f"{'embedder':<12}{'Lambda s':>12}{'GB-s':>12}{'Lambda USD':>12}{'model USD':>12}{'USD':>9}")
    for c in embedding_costs(chunks, e):
        print(f"{c.embedder:<12}{c.lambda_s:>12,.0f}{c.gb_s:>12,.0f}{c.lambda_usd:>12.2f}{c.model_usd:>12.2f}{c.usd:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10, help="pages per document")
    parser.add_argument("--images", type=int, default=20, help="distinct images per document")
    parser.add_argument("--lambda-concurrency", type=int, default=LAMBDA_CONCURRENCY)
    parser.add_argument("--db-vcpus", type=int, default=DB_VCPUS)
    parser.add_argument("--db-hour", type=float, default=DB_HOUR, help="the instance's USD per hour")
    parser.add_argument("--gpu-instances", type=int, default=GPU_INSTANCES)
    parser.add_argument("--gpu-images-per-s", type=float, default=GPU_IMAGES_PER_S)
    parser.add_argument("--gpu-min-images", type=int, default=GPU_MIN_IMAGES, help="fewer images embed on Lambda")
    parser.add_argument("--chunks", type=int, default=1_000_000, help="chunks to cost the embedders for")
    args = parser.parse_args()
    measured = load()
    m = inputs_from(measured)
    limits = Limits(lambda_concurrency=args.lambda_concurrency, db_vcpus=args.db_vcpus, db_hour=args.db_hour,
                    gpu_instances=args.gpu_instances, gpu_images_per_s=args.gpu_images_per_s,
                    gpu_min_images=args.gpu_min_images)
    fallback = sorted(n for n, s in m.sources.items() if s != "measured")
    if fallback:
        print(f"not in {MEASURED} (run the benches for this machine's figures), using bench/RESULTS.md's: "
              f"{', '.join(fallback)}\n")
    a, b = m.function_seconds["ExtractBatch"]
    print(f"inputs: ExtractBatch {a:.2f} s + {b * 1000:.0f} ms/page, CLIP {m.clip_images_per_s_per_vcpu:.0f} "
          f"images/s per vCPU, COPY {m.copy_image_rows_per_s:,.0f} rows/s, HNSW inserts {m.hnsw_insert_rows_per_s:,.0f} "
          f"rows/s at {m.hnsw_rows:,} rows, HNSW build {m.hnsw_build_rows_per_s:,.0f} rows/s on {m.hnsw_build_cores} cores")
    partition_gb = m.hnsw_mb_per_million * PARTITION_ROWS / 1e6 / 1024
    print(f"deferred HNSW: partitions of {PARTITION_ROWS:,} rows, each index about {partition_gb:.1f} GB "
          f"(maintenance_work_mem must hold it for the fast in-memory build; halfvec halves it)")
    print(f"limits: Lambda concurrency {limits.lambda_concurrency:,}, {limits.db_vcpus} database vCPUs, "
          f"{limits.gpu_instances} GPU instances at {limits.gpu_images_per_s:.0f} images/s (assumed)\n")
    projections = [project(Workload(n, args.pages, args.images), m, limits, index=index)
                   for n in (1_000, 100_000, 500_000) for index in ("online", "deferred")]
    print_projections(projections)
    print()
    print_bounds(projections)
    print()
    print_seeds(m, limits, projections[-1], measured)
    print()
    print_embedding_costs(args.chunks, embedding_inputs_from(measured))


if __name__ == "__main__":
    main()
