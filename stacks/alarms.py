"""An alarm a construct asks Monitoring to raise: what it watches, and when it pages."""

from __future__ import annotations

from typing import NamedTuple

from aws_cdk import aws_cloudwatch as cloudwatch


class AlarmSpec(NamedTuple):
    id_: str
    metric: cloudwatch.IMetric
    threshold: float
    description: str
    below: bool = False  # page when the metric falls to the threshold, not when it reaches it
