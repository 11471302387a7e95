"""What pages the on-call engineer: CloudWatch alarms into one SNS topic (e-mail from the
configuration), a rule that publishes every failed document execution to the same topic, and the
dashboard they open next.

Alarms: the state machine's failed, timed-out, throttled and aborted executions; executions
running longer than expected ("stuck", from the watch function's schedule); each function's
errors, throttles and duration near its timeout; the upload trigger's dead-letter queue holding
anything at all; GPU embed tasks failing or timing out (missed heartbeats), each try counted, so
a retried failure still shows.

The dashboard (cdk-monitoring-constructs): throughput (documents, pages and images per minute),
failures by error class, running executions against the stuck line, the state machine, and per
state the duration, errors and throttles of the function behind it and of the GPU task.
"""

from __future__ import annotations

from collections.abc import Sequence

import cdk_monitoring_constructs as monitoring
from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from pagemill import metrics
from stacks.alarms import AlarmSpec
from stacks.events import PARTIAL_OUTPUT, execution_status_pattern

# A function whose p99 duration passes this share of its timeout is about to start timing out.
DURATION_ALARM_SHARE = 0.8
PERIOD = Duration.minutes(5)
GPU_TASK_RESOURCE = "arn:aws:states:::ecs:runTask.waitForTaskToken"
# What the handlers publish with Powertools (EMF): namespace and the service dimension it adds.
SERVICE = {"service": metrics.SERVICE}
WATCH_SCHEDULE = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.Function],
        watch: lambda_.Function,
        dead_letter_queue: sqs.IQueue,
        alarm_email: str | None,
        stuck_after: Duration,
        alarms: Sequence[AlarmSpec] = (),
    ) -> None:
        """``alarms``: what other constructs ask to be paged on (the database's)."""
        super().__init__(scope, id_)
        self.topic = sns.Topic(self, "Alarms", display_name="pagemill alarms", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        for metric_name, what in (
            ("ExecutionsFailed", "document executions failed"),
            ("ExecutionsTimedOut", "document executions timed out"),
            ("ExecutionThrottled", "state transitions were throttled"),
            ("ExecutionsAborted", "document executions were stopped"),
        ):
            metric = cloudwatch.Metric(
                namespace="AWS/States", metric_name=metric_name,
                dimensions_map={"StateMachineArn": state_machine.state_machine_arn}, statistic="Sum", period=PERIOD,
            )
            self.add_alarm(f"StateMachine{metric_name}", metric, 1, f"pagemill: {what}")

        for metric_name, what in (
            ("ServiceIntegrationsFailed", "GPU embed tasks failed"),
            ("ServiceIntegrationsTimedOut", "GPU embed tasks went quiet (heartbeat or task timeout)"),
        ):
            metric = cloudwatch.Metric(
                namespace="AWS/States", metric_name=metric_name,
                dimensions_map={"ServiceIntegrationResourceArn": GPU_TASK_RESOURCE}, statistic="Sum", period=PERIOD,
            )
            self.add_alarm(f"Gpu{metric_name}", metric, 1, f"pagemill: {what}")

        for name, function in functions.items():
            self.add_alarm(f"{name}Errors", function.metric_errors(period=PERIOD, statistic="Sum"), 1,
                        f"pagemill: {name} raised errors")
            self.add_alarm(f"{name}Throttles", function.metric_throttles(period=PERIOD, statistic="Sum"), 1,
                        f"pagemill: {name} was throttled")
            near_timeout = function.timeout.to_milliseconds() * DURATION_ALARM_SHARE
            self.add_alarm(f"{name}DurationNearTimeout", function.metric_duration(period=PERIOD, statistic="p99"),
                        near_timeout, f"pagemill: {name} p99 duration is past {DURATION_ALARM_SHARE:.0%} of its timeout")

        # The watch publishes the oldest running execution's age; past stuck_after it is stuck.
        events.Rule(
            self, "WatchSchedule", description="Measure the running document executions (stuck alarm)",
            schedule=events.Schedule.rate(WATCH_SCHEDULE), targets=[targets.LambdaFunction(watch, retry_attempts=0)],
        )
        oldest_running = _pagemill_metric(metrics.OLDEST_RUNNING_EXECUTION_SECONDS, "Maximum", PERIOD)
        self.add_alarm(
            "ExecutionStuck", oldest_running, stuck_after.to_seconds(),
            f"pagemill: a document execution has been running for more than {stuck_after.to_minutes()} minutes",
        )

        self.add_alarm(
            "TriggerDeadLetters",
            dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
            1,
            "pagemill: upload events the trigger could not handle are waiting in its dead-letter queue",
        )

        # Every failed document, as it happens: the execution's name is the upload, its Fail
        # state's error and cause are the class and the reason RecordFailure wrote.
        events.Rule(
            self,
            "DocumentFailed",
            description="A document execution failed, timed out or was stopped",
            event_pattern=execution_status_pattern(state_machine, "FAILED", "TIMED_OUT", "ABORTED"),
            targets=[targets.SnsTopic(self.topic)],
        )
        # And every partial one: the execution succeeded, Write said partial (its warnings' codes
        # are in the output; `pagemill status --aws` shows them, the row holds the messages).
        events.Rule(
            self,
            "DocumentPartial",
            description="A document finished partial: something expected is missing (see its warnings)",
            event_pattern=execution_status_pattern(state_machine, "SUCCEEDED", output_wildcards=PARTIAL_OUTPUT),
            targets=[targets.SnsTopic(self.topic)],
        )
        self.add_alarm(
            "DocumentsPartial", _pagemill_metric(metrics.DOCUMENTS_PARTIAL, "Sum", PERIOD), 1,
            "pagemill: documents finished partial (content, captions or understanding missing: see their warnings)",
        )

        self._dashboard(state_machine, functions, stuck_after)
        for alarm in alarms:
            self.add_alarm(alarm.id_, alarm.metric, alarm.threshold, alarm.description, below=alarm.below)

    def _dashboard(
        self, state_machine: sfn.StateMachine, functions: dict[str, lambda_.Function], stuck_after: Duration
    ) -> None:
        minute = Duration.minutes(1)
        facade = monitoring.MonitoringFacade(
            self, "Dashboard",
            dashboard_factory=monitoring.DefaultDashboardFactory(
                self, "Dashboards", dashboard_name_prefix="pagemill", create_dashboard=True,
                create_summary_dashboard=False, create_alarm_dashboard=False,
            ),
        )
        facade.add_large_header("pagemill documents")
        facade.monitor_custom(
            human_readable_name="Throughput",
            alarm_friendly_name="Throughput",
            metric_groups=[
                monitoring.CustomMetricGroup(title="Documents per minute", metrics=[
                    _pagemill_metric(metrics.DOCUMENTS_SUCCEEDED, "Sum", minute, "succeeded"),
                    _pagemill_metric(metrics.DOCUMENTS_PARTIAL, "Sum", minute, "partial"),
                    _pagemill_metric(metrics.DOCUMENTS_FAILED, "Sum", minute, "failed"),
                ]),
                monitoring.CustomMetricGroup(title="Pages and images per minute", metrics=[
                    _pagemill_metric(metrics.PAGES_EXTRACTED, "Sum", minute, "pages extracted"),
                    _pagemill_metric(metrics.IMAGES_EXTRACTED, "Sum", minute, "images extracted"),
                    _pagemill_metric(metrics.IMAGES_EMBEDDED, "Sum", minute, "images embedded"),
                    _pagemill_metric(metrics.IMAGES_CAPTIONED, "Sum", minute, "images captioned"),
                ]),
                monitoring.CustomMetricGroup(title="Failures by error class", metrics=[
                    monitoring.CustomMetricSearch(
                        namespace=metrics.NAMESPACE, search_query=f'MetricName="{metrics.DOCUMENTS_FAILED_BY_CLASS}"',
                        dimensions_map={**SERVICE, metrics.ERROR_CLASS_DIMENSION: "*"}, statistic=monitoring.MetricStatistic.SUM,
                        period=PERIOD, label=f"${{PROP('Dim.{metrics.ERROR_CLASS_DIMENSION}')}}",
                    ),
                ]),
                monitoring.CustomMetricGroup(
                    title="Running executions",
                    metrics=[
                        _pagemill_metric(metrics.RUNNING_EXECUTIONS, "Maximum", PERIOD, "running"),
                        _pagemill_metric(metrics.OLDEST_RUNNING_EXECUTION_SECONDS, "Maximum", PERIOD, "oldest (s)"),
                    ],
                    horizontal_annotations=[cloudwatch.HorizontalAnnotation(
                        value=stuck_after.to_seconds(), label="stuck",
                    )],
                ),
            ],
        )
        facade.monitor_step_function(
            state_machine=state_machine, human_readable_name="Document executions", alarm_friendly_name="Documents",
        )
        facade.monitor_step_function_service_integration(
            service_integration_resource_arn=GPU_TASK_RESOURCE, human_readable_name="EmbedOnGpu (ECS task)",
            alarm_friendly_name="EmbedOnGpu",
        )
        for name, function in functions.items():
            facade.monitor_lambda_function(lambda_function=function, human_readable_name=name, alarm_friendly_name=name)

    def add_alarm(
        self, id_: str, metric: cloudwatch.IMetric, threshold: float, description: str, *, below: bool = False
    ) -> None:
        """Page the topic when ``metric`` reaches ``threshold`` (falls to it, with ``below``); other
        constructs (the database) add theirs here too."""
        alarm = cloudwatch.Alarm(
            self,
            id_,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD if below
            else cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))


def _pagemill_metric(name: str, statistic: str, period: Duration, label: str | None = None) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE, metric_name=name, dimensions_map=SERVICE, statistic=statistic, period=period, label=label
    )
