#!/usr/bin/env python3
"""CDK entry: one stack, configured by the ``context`` block of cdk.json, checked by cdk-nag's
AWS Solutions rules (each construct accepts its findings, with reasons, beside its resources)."""

from aws_cdk import App, Aspects
from cdk_nag import AwsSolutionsChecks

from stacks.config import PipelineConfig
from stacks.pipeline_stack import PipelineStack

app = App()
PipelineStack(
    app,
    app.node.try_get_context("stack_name") or "Pagemill",
    config=PipelineConfig.from_context(app.node),
    description="pagemill: PDFs uploaded to S3 become pages, chunks and images in PostgreSQL",
)
Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
app.synth()
