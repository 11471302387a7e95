"""PipelineFunctions in an otherwise empty stack (with its bucket, the caption state and a
configured database secret): runtime, limits, settings, handler folders and least privilege."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from pagemill import keys
from tests.infrastructure.conftest import (
    BYO_SECRET,
    ROOT,
    construct_template,
    functions_part,
    part_fixture,
)
from tests.infrastructure.queries import (
    actions_of,
    as_list,
    function_with,
    handler_of,
    object_suffixes,
    of_type,
    pagemill_functions,
    role_statements,
)

template = part_fixture(functions_part)


FUNCTIONS = {
    # handler: (source folder, timeout s, memory MB)
    "handler.plan": ("lambdas/extract", 300, 2048),
    "handler.extract_batch": ("lambdas/extract", 300, 3008),
    "handler.write": ("lambdas/write", 300, 1024),
    "handler.record_failure": ("lambdas/write", 60, 512),
    "handler.settle": ("lambdas/write", 60, 512),
    "handler.collect_images": ("lambdas/embed", 120, 1024),
    "handler.embed": ("lambdas/embed", 900, 3008),
    "handler.caption_batch": ("lambdas/caption", 300, 1024),
    "handler.understand": ("lambdas/caption", 300, 1024),
    "handler.speak_summary": ("lambdas/speech", 120, 512),
    "handler.embed_chunks": ("lambdas/embed", 900, 1024),
    "handler.handler": ("lambdas/trigger", 30, 256),
    "handler.watch": ("lambdas/trigger", 60, 256),
    "handler.on_event": ("lambdas/migrate", 900, 512),
    "handler.api": ("lambdas/api", 29, 2048),
    "handler.reembed_batch": ("lambdas/reembed", 900, 1024),
    "handler.build_index": ("lambdas/reembed", 900, 512),
}


DATABASE_HANDLERS = (
    "handler.plan", "handler.write", "handler.record_failure", "handler.settle", "handler.on_event", "handler.api",
    "handler.reembed_batch", "handler.build_index",
)


PIPELINE_HANDLERS = (
    "handler.plan", "handler.extract_batch", "handler.collect_images", "handler.embed", "handler.caption_batch",
    "handler.understand", "handler.speak_summary", "handler.embed_chunks", "handler.write", "handler.record_failure",
)


def test_functions_are_python312_x86_with_timeouts_and_tracing(resources: dict[str, Any]) -> None:
    assert len(pagemill_functions(resources)) == len(FUNCTIONS)
    for handler, (source, timeout, memory) in FUNCTIONS.items():
        props = function_with(resources, handler)["Properties"]
        # ExtractBatch's image is built on the Lambda Python 3.12 base (containers/extract/Dockerfile)
        assert props.get("Runtime", "python3.12") == "python3.12", handler
        assert ("Runtime" in props) == (handler != "handler.extract_batch"), handler
        assert props["Architectures"] == ["x86_64"], handler
        assert (props["Timeout"], props["MemorySize"]) == (timeout, memory), handler
        assert props["TracingConfig"] == {"Mode": "Active"}, handler
        assert props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "pagemill", handler
        assert "LogGroup" in props["LoggingConfig"], handler
    assert function_with(resources, "handler.extract_batch")["Properties"]["EphemeralStorage"] == {"Size": 2048}
    assert function_with(resources, "handler.embed")["Properties"]["EphemeralStorage"] == {"Size": 4096}
    for group in of_type(resources, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == 30


def test_pipeline_functions_get_their_settings(resources: dict[str, Any]) -> None:
    (bucket_id,) = of_type(resources, "AWS::S3::Bucket")
    for handler in PIPELINE_HANDLERS:
        variables = function_with(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables["PAGEMILL_WORK_BUCKET"] == {"Ref": bucket_id}
        assert variables["PAGEMILL_BATCH_PAGES"] == "25"
        assert variables["PAGEMILL_MAX_PAGES"] == "10000"
        assert variables["PAGEMILL_MAX_BYTES"] == "536870912"
        assert variables["PAGEMILL_MARKDOWN_MODE"] == "legacy"
        assert ("DATABASE_SECRET_ARN" in variables) == (handler in DATABASE_HANDLERS)  # the stack's database
    # AND the image stages know where documents go to be embedded, and Embed where its model is
    for handler in ("handler.collect_images", "handler.embed"):
        variables = function_with(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables["PAGEMILL_GPU_MIN_IMAGES"] == "200", handler
    variables = function_with(resources, "handler.embed")["Properties"]["Environment"]["Variables"]
    assert variables["PAGEMILL_CLIP_DIR"] == "/tmp/clip"
    assert "PAGEMILL_CLIP_S3_URI" not in variables  # none configured in cdk.json


def test_each_function_names_its_handler_folder(resources: dict[str, Any]) -> None:
    # With bundling skipped, a zip's asset path is the handler folder itself; pagemill:source names
    # it relative to the repository root (what the local engine runs, ExtractBatch's image included).
    for handler, (source, _, _) in FUNCTIONS.items():
        metadata = function_with(resources, handler)["Metadata"]
        assert metadata["pagemill:source"] == source
        if handler != "handler.extract_batch":
            assert Path(metadata["aws:asset:path"]) == ROOT / source
        assert (ROOT / source / "handler.py").is_file()


def test_extract_batch_is_an_image_with_ocr_that_deploy_builds(tmp_path: Path) -> None:
    # GIVEN the default configuration (no extract_image_uri)
    resources = construct_template(tmp_path, functions_part).to_json()["Resources"]
    # THEN ExtractBatch is a container image of the same handler, memory and timeout; Plan stays a zip
    extract = function_with(resources, "handler.extract_batch")
    props = extract["Properties"]
    assert props["PackageType"] == "Image" and props["ImageConfig"] == {"Command": ["handler.extract_batch"]}
    assert (props["MemorySize"], props["Timeout"], props["Architectures"]) == (3008, 300, ["x86_64"])
    assert function_with(resources, "handler.plan")["Properties"]["Runtime"] == "python3.12"
    # AND `cdk deploy` builds it from containers/extract/Dockerfile for the functions' architecture
    (assets,) = tmp_path.rglob("Pagemill.assets.json")
    (image,) = json.loads(assets.read_text())["dockerImages"].values()
    assert image["source"]["dockerFile"] == "containers/extract/Dockerfile"
    assert image["source"]["platform"] == "linux/amd64"
    # AND the build context synth staged holds what the Dockerfile copies, and nothing else
    # (no .venv, tests, build, cdk.out, node_modules, caches)
    context = tmp_path / extract["Metadata"]["aws:asset:path"]
    assert extract["Metadata"]["aws:asset:path"] == image["source"]["directory"]
    assert sorted(p.name for p in context.iterdir()) == ["containers", "lambdas", "pagemill"]
    assert [p.name for p in (context / "containers").iterdir()] == ["extract"]
    assert [p.name for p in (context / "lambdas").iterdir()] == ["extract"]
    staged = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert {"containers/extract/Dockerfile", "containers/extract/requirements.txt", "lambdas/extract/handler.py",
            "lambdas/extract/requirements.txt", "pagemill/pdf/ocr.py"} <= staged
    assert not [f for f in staged if "__pycache__" in f or f.endswith(".pyc") or "/." in f or f.startswith(".")]
    library = {str(p.relative_to(ROOT)) for p in (ROOT / "pagemill").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}
    assert {f for f in staged if f.startswith("pagemill/")} == library


def test_extract_batch_runs_from_the_zip_without_ocr_when_opted_out(tmp_path: Path) -> None:
    # GIVEN an account without Docker, deploying with extract_ocr false
    resources = construct_template(tmp_path, functions_part, extract_ocr=False).to_json()["Resources"]
    # THEN ExtractBatch is the extract zip, as Plan is, and nothing is left for Docker to build
    extract, plan = (function_with(resources, h)["Properties"] for h in ("handler.extract_batch", "handler.plan"))
    assert extract["Runtime"] == "python3.12" and "PackageType" not in extract
    assert extract["Code"] == plan["Code"]
    (assets,) = tmp_path.rglob("Pagemill.assets.json")
    assert json.loads(assets.read_text()).get("dockerImages", {}) == {}


def test_functions_get_least_privilege_bucket_access(resources: dict[str, Any]) -> None:
    def s3_grants(handler: str) -> dict[str, set[str]]:
        role_id = function_with(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
        grants: dict[str, set[str]] = {}
        for policy in of_type(resources, "AWS::IAM::Policy").values():
            if {"Ref": role_id} not in policy["Properties"]["Roles"]:
                continue
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = [a for a in actions_of(statement) if a.startswith("s3:")]
                targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                for target in targets:
                    text = json.dumps(target)
                    prefix = next((p for p in ("/uploads/*", "/documents/*") if p in text), None)
                    if prefix:
                        grants.setdefault(prefix, set()).update(actions)
        return grants

    plan = s3_grants("handler.plan")
    assert "s3:GetObject*" in plan["/uploads/*"] and "s3:PutObject" in plan["/documents/*"]
    extract = s3_grants("handler.extract_batch")
    assert "s3:GetObject*" in extract["/uploads/*"] and "s3:PutObject" in extract["/documents/*"]
    write = s3_grants("handler.write")
    assert set(write) == {"/documents/*"} and "s3:PutObject" not in write["/documents/*"]
    record = s3_grants("handler.record_failure")
    assert set(record) == {"/uploads/*"} and "s3:PutObject" not in record["/uploads/*"]
    assert s3_grants("handler.handler") == {}
    # CollectImages writes only the image and caption batch lists, Embed only embeddings, the
    # caption functions only their answers
    collect = s3_grants("handler.collect_images")
    assert set(collect) == {"/documents/*"} and "s3:GetObject*" in collect["/documents/*"]
    embed = s3_grants("handler.embed")
    assert set(embed) == {"/documents/*"} and "s3:GetObject*" in embed["/documents/*"]
    # (and a map item its timing, pagemill.pipeline.timings: the others' travel in their results)
    assert sorted(put_targets(resources, "handler.collect_images")) == [
        "/documents/*/caption-batches.json", "/documents/*/images.json"
    ]
    assert put_targets(resources, "handler.embed") == ["/documents/*/embeddings/*"]
    assert put_targets(resources, "handler.caption_batch") == ["/documents/*/captions/*", "/documents/*/timings/*"]
    assert put_targets(resources, "handler.understand") == ["/documents/*/understanding.json"]
    assert put_targets(resources, "handler.speak_summary") == ["/documents/*/speech/*"]


def put_targets(resources: dict[str, Any], handler: str) -> list[str]:
    role_id = function_with(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
    return sorted(
        suffix
        for s in role_statements(resources, role_id)
        if "s3:PutObject" in actions_of(s)
        for suffix in object_suffixes(s)
    )


def test_database_secret_reaches_only_the_database_functions(resources: dict[str, Any]) -> None:
    # GIVEN a configured database secret (what functions_part passes)
    arn = BYO_SECRET
    # THEN Plan, Write, RecordFailure, Settle and the migration get it and may read it; ExtractBatch and
    # the trigger do not
    for handler in FUNCTIONS:
        function = function_with(resources, handler)
        has_secret = function["Properties"]["Environment"]["Variables"].get("DATABASE_SECRET_ARN") == arn
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        may_read = any(
            "secretsmanager:GetSecretValue" in actions_of(s) and arn in s["Resource"]
            for policy in of_type(resources, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
        expected = handler in DATABASE_HANDLERS
        assert (has_secret, may_read) == (expected, expected), handler


def test_caption_functions_share_a_table_and_read_the_key_secret(resources: dict[str, Any]) -> None:
    (table_id, table), = of_type(resources, "AWS::DynamoDB::GlobalTable").items()
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    # the stack's names are the library's (infrastructure does not import it)
    from pagemill.captions import breaker, budget
    from stacks import captions

    assert (captions.TABLE_KEY, captions.TTL_ATTRIBUTE) == (breaker.TABLE_KEY, budget.TTL_ATTRIBUTE)
    (secret_id,) = [k for k in of_type(resources, "AWS::SecretsManager::Secret") if k.startswith("Captions")]
    for handler in ("handler.caption_batch", "handler.understand"):
        env = function_with(resources, handler)["Properties"]["Environment"]["Variables"]
        assert env["PAGEMILL_CAPTIONS_TABLE"] == {"Ref": table_id}
        assert env["ANTHROPIC_SECRET_ARN"] == {"Ref": secret_id}
        assert env["PAGEMILL_CAPTION_MODEL"] == "claude-sonnet-5"
    collect = function_with(resources, "handler.collect_images")["Properties"]["Environment"]["Variables"]
    assert collect["PAGEMILL_CAPTION_PROVIDER"] == "anthropic"
    assert collect["PAGEMILL_CAPTION_BATCH_SIZE"] == "5"


# The functions that embed text with the configured embedder: chunks (EmbedChunks, ReembedBatch), search
# queries (the API).
TEXT_EMBEDDING_HANDLERS = ("handler.embed_chunks", "handler.api", "handler.reembed_batch")


def bedrock_statements(resources: dict[str, Any], handler: str) -> list[dict[str, Any]]:
    role = function_with(resources, handler)["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for s in role_statements(resources, role) if any(a.startswith("bedrock:") for a in actions_of(s))]


def test_the_text_embedding_functions_may_invoke_only_the_titan_model(resources: dict[str, Any]) -> None:
    for handler in TEXT_EMBEDDING_HANDLERS:
        variables = function_with(resources, handler)["Properties"]["Environment"]["Variables"]
        assert (variables["PAGEMILL_TEXT_EMBEDDER"], variables["PAGEMILL_TITAN_DIMENSIONS"]) == ("titan", "1024")
        assert variables["PAGEMILL_TITAN_MODEL_ID"] == "amazon.titan-embed-text-v2:0"
        bedrock = bedrock_statements(resources, handler)
        assert [actions_of(s) for s in bedrock] == [["bedrock:InvokeModel"]], handler
        (arn,) = as_list(bedrock[0]["Resource"])
        assert json.dumps(arn).endswith('"::foundation-model/amazon.titan-embed-text-v2:0"]]}'), handler
    # no other function may call Bedrock with the default (anthropic) caption provider
    for handler in set(FUNCTIONS) - set(TEXT_EMBEDDING_HANDLERS):
        assert not bedrock_statements(resources, handler), handler


def test_with_text_embeddings_off_the_api_searches_by_keyword_without_bedrock(tmp_path: Path) -> None:
    resources = construct_template(tmp_path, functions_part, text_embedder="off").to_json()["Resources"]
    variables = function_with(resources, "handler.api")["Properties"]["Environment"]["Variables"]
    assert variables["PAGEMILL_TEXT_EMBEDDER"] == "off"
    assert not bedrock_statements(resources, "handler.api")
    handlers = {handler_of(f) for f in pagemill_functions(resources).values()}
    assert not handlers & {"handler.embed_chunks", "handler.reembed_batch", "handler.build_index"}


def test_with_the_offline_embedder_no_function_may_call_bedrock(tmp_path: Path) -> None:
    resources = construct_template(tmp_path, functions_part, text_embedder="wordllama").to_json()["Resources"]
    for handler in TEXT_EMBEDDING_HANDLERS:
        variables = function_with(resources, handler)["Properties"]["Environment"]["Variables"]
        assert variables["PAGEMILL_TEXT_EMBEDDER"] == "wordllama"
        assert not bedrock_statements(resources, handler), handler


# What each stage writes, by pagemill.keys (the names the library uses), for one document.
DOCUMENT = "3f2a9c"
WRITES = {
    "handler.plan": [keys.manifest_key(DOCUMENT)],
    "handler.extract_batch": [keys.batch_result_key(DOCUMENT, 1, 25), keys.image_key(DOCUMENT, "ab" * 32, "png"),
                              keys.timing_key(DOCUMENT, "ExtractPages", "00000")],
    "handler.collect_images": [keys.image_list_key(DOCUMENT), keys.caption_batches_key(DOCUMENT)],
    "handler.embed": [keys.embeddings_prefix(DOCUMENT) + "index.json"],
    "handler.caption_batch": [keys.caption_batch_key(DOCUMENT, 3), keys.timing_key(DOCUMENT, "Captions", "00003")],
    "handler.understand": [keys.understanding_key(DOCUMENT)],
    "handler.speak_summary": [keys.summary_audio_key(DOCUMENT, "mp3")],
    "handler.embed_chunks": [keys.chunk_vectors_key(DOCUMENT)],
}


def test_every_key_a_stage_writes_is_one_its_role_may_put(resources: dict[str, Any]) -> None:
    # A renamed key that the grants did not follow would pass every local run (the local engine
    # enforces no IAM) and fail on AWS with AccessDenied: here it fails.
    for handler, written in WRITES.items():
        patterns = put_targets(resources, handler)
        for key in written:
            assert any(fnmatch.fnmatchcase(f"/{key}", p) for p in patterns), f"{handler} may not put {key}: {patterns}"
    # AND a key outside them is refused (the check is not vacuous)
    assert not any(fnmatch.fnmatchcase(f"/{keys.manifest_key(DOCUMENT)}", p)
                   for p in put_targets(resources, "handler.collect_images"))


def test_extract_batch_runs_a_pushed_image_with_ocr_when_one_is_named(tmp_path: Path) -> None:
    # GIVEN the extract image (containers/extract/Dockerfile: the zip's handler plus OCR) pushed to ECR
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/pagemill-extract:v1"
    resources = construct_template(tmp_path, functions_part, extract_image_uri=uri).to_json()["Resources"]
    functions = {r["Properties"].get("ImageConfig", {}).get("Command", [None])[0] or r["Properties"].get("Handler"): r
                 for r in of_type(resources, "AWS::Lambda::Function").values()}
    # THEN ExtractBatch runs that image with the same handler, memory and timeout; Plan stays a zip
    extract = functions["handler.extract_batch"]["Properties"]
    assert extract["PackageType"] == "Image" and "pagemill-extract:v1" in json.dumps(extract["Code"])
    assert (extract["MemorySize"], extract["Timeout"]) == (3008, 300)
    assert functions["handler.plan"]["Properties"]["Runtime"] == "python3.12"
    # AND only ExtractBatch's role may pull it, from that repository only
    arn = ":ecr:eu-west-1:123456789012:repository/pagemill-extract"
    pulls = [s for p in of_type(resources, "AWS::IAM::Policy").values()
             for s in p["Properties"]["PolicyDocument"]["Statement"] if "ecr:BatchGetImage" in actions_of(s)]
    assert [s["Resource"] for s in pulls] == [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, arn]]}]
    # AND nothing is left for Docker to build
    (assets,) = tmp_path.rglob("Pagemill.assets.json")
    assert json.loads(assets.read_text()).get("dockerImages", {}) == {}
