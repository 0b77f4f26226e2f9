"""Function logs through the CloudWatch Logs subset on the same endpoint (boto3 `logs` client and
`aws logs`). Logs are stored asynchronously, so every read polls with a deadline."""

from __future__ import annotations

import time

import pytest

import kappa_helpers as h

HANDLER = r"""
  echo "hello from $REQUEST_ID"
  echo "to stderr $REQUEST_ID" >&2
  printf '{"stream":"%s","request_id":"%s"}' "$AWS_LAMBDA_LOG_STREAM_NAME" "$REQUEST_ID" > "$RESPONSE"
  respond "$RESPONSE"
"""


@pytest.fixture(scope="module")
def logs(server):
    return h.logs_client(server.url)


@pytest.fixture(scope="module")
def logged(server, client):
    """A function invoked twice (cold, then warm) in one environment."""
    name = h.new_name("logged")
    h.create_custom_function(client, name, h.shell_bootstrap(HANDLER))
    started_ms = int(time.time() * 1000)
    results = [h.invoke_ok(client, name, {}) for _ in range(2)]
    ended_ms = int(time.time() * 1000)
    bodies = [r.json() for r in results]
    assert bodies[0]["stream"] == bodies[1]["stream"]
    return {
        "name": name,
        "group": f"/aws/lambda/{name}",
        "stream": bodies[0]["stream"],
        "ids": [b["request_id"] for b in bodies],
        "window": (started_ms, ended_ms),
    }


def all_events(logs, group: str, stream: str) -> list[dict]:
    events = []
    kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    while True:
        page = logs.get_log_events(**kwargs)
        events.extend(page["events"])
        token = page.get("nextForwardToken")
        if not page["events"] or not token or token == kwargs.get("nextToken"):
            return events
        kwargs["nextToken"] = token


def events_once_complete(logs, logged) -> list[dict]:
    last_report = f"REPORT RequestId: {logged['ids'][-1]}"

    def ready():
        try:
            events = all_events(logs, logged["group"], logged["stream"])
        except logs.exceptions.ResourceNotFoundException:
            return None
        return events if any(e["message"].startswith(last_report) for e in events) else None

    return h.wait_until(10, ready, desc=f"the logs of {logged['name']} to be stored")


def test_log_group_is_listed(logs, logged):
    def group():
        found = logs.describe_log_groups(logGroupNamePrefix=logged["group"])["logGroups"]
        return [g for g in found if g["logGroupName"] == logged["group"]]

    groups = h.wait_until(10, group, desc="the log group")
    assert len(groups) == 1
    assert groups[0]["arn"].startswith(f"arn:aws:logs:us-east-1:000000000000:log-group:{logged['group']}")
    everything = [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]]
    assert logged["group"] in everything


def test_log_stream_is_the_environments_stream(logs, logged):
    def streams():
        try:
            return logs.describe_log_streams(logGroupName=logged["group"])["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return None

    found = h.wait_until(10, streams, desc="the log stream")
    names = [s["logStreamName"] for s in found]
    assert names == [logged["stream"]], names
    assert h.LOG_STREAM_RE.match(logged["stream"]), logged["stream"]


def test_get_log_events_has_platform_lines_and_output(logs, logged):
    events = events_once_complete(logs, logged)
    messages = [e["message"] for e in events]
    for message in messages:
        assert message.endswith("\n"), f"log event without its trailing newline: {message!r}"
        assert message.count("\n") == 1, f"one line per event: {message!r}"
    lines = [m.rstrip("\n") for m in messages]
    order = []
    for request_id in logged["ids"]:
        expected = [
            f"START RequestId: {request_id} Version: $LATEST",
            f"hello from {request_id}",
            f"to stderr {request_id}",
            f"END RequestId: {request_id}",
        ]
        for line in expected:
            assert line in lines, f"{line!r} missing from the stream:\n" + "\n".join(lines)
            order.append(lines.index(line))
        reports = [i for i, line in enumerate(lines) if line.startswith(f"REPORT RequestId: {request_id}\t")]
        assert len(reports) == 1, lines
        order.append(reports[0])
        assert h.REPORT_RE.match(lines[reports[0]]), lines[reports[0]]
    assert order == sorted(order), "START, output, END and REPORT of both invocations must be in order"
    report_lines = [line for line in lines if line.startswith("REPORT ")]
    assert "Init Duration" in report_lines[0] and "Init Duration" not in report_lines[1], report_lines
    assert lines[0].startswith("INIT_START "), lines[0]
    start_ms, end_ms = logged["window"]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(start_ms - 1000 <= t <= end_ms + 1000 for t in stamps), (start_ms, stamps, end_ms)
    assert all(e["ingestionTime"] >= e["timestamp"] for e in events), events


def test_get_log_events_from_the_tail(logs, logged):
    events_once_complete(logs, logged)
    page = logs.get_log_events(logGroupName=logged["group"], logStreamName=logged["stream"], limit=2)
    lines = [e["message"] for e in page["events"]]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"END RequestId: {logged['ids'][-1]}"), lines
    assert lines[1].startswith(f"REPORT RequestId: {logged['ids'][-1]}"), lines


def test_filter_log_events(logs, logged):
    events_once_complete(logs, logged)
    found = logs.filter_log_events(logGroupName=logged["group"], filterPattern="hello")["events"]
    messages = [e["message"] for e in found]
    assert messages == [f"hello from {i}\n" for i in logged["ids"]], messages
    assert all(e["logStreamName"] == logged["stream"] for e in found)
    assert all(e.get("eventId") for e in found)
    everything = logs.filter_log_events(logGroupName=logged["group"])["events"]
    assert len(everything) > len(found)


def test_cli_filter_log_events(server, logs, logged, tmp_path):
    events_once_complete(logs, logged)
    out = h.aws_cli(server.url, tmp_path, "logs", "filter-log-events", "--log-group-name", logged["group"])
    messages = [e["message"] for e in out["events"]]
    for request_id in logged["ids"]:
        assert f"hello from {request_id}\n" in messages, messages
        assert f"START RequestId: {request_id} Version: $LATEST\n" in messages, messages
    out = h.aws_cli(server.url, tmp_path, "logs", "filter-log-events", "--log-group-name", logged["group"],
                    "--filter-pattern", "stderr")
    assert [e["message"] for e in out["events"]] == [f"to stderr {i}\n" for i in logged["ids"]]


def test_retention_policy(logs, logged):
    events_once_complete(logs, logged)
    logs.put_retention_policy(logGroupName=logged["group"], retentionInDays=7)
    group = logs.describe_log_groups(logGroupNamePrefix=logged["group"])["logGroups"][0]
    assert group["retentionInDays"] == 7
    h.logs_api_error(logs, lambda: logs.put_retention_policy(logGroupName=logged["group"], retentionInDays=8),
                     "InvalidParameterException")
    group = logs.describe_log_groups(logGroupNamePrefix=logged["group"])["logGroups"][0]
    assert group["retentionInDays"] == 7


def test_unknown_log_group(logs):
    group = f"/aws/lambda/{h.new_name('nolog')}"
    h.logs_api_error(logs, lambda: logs.describe_log_streams(logGroupName=group), "ResourceNotFoundException")
    h.logs_api_error(logs, lambda: logs.get_log_events(logGroupName=group, logStreamName="x"),
                     "ResourceNotFoundException")
    h.logs_api_error(logs, lambda: logs.filter_log_events(logGroupName=group), "ResourceNotFoundException")
    h.logs_api_error(logs, lambda: logs.put_retention_policy(logGroupName=group, retentionInDays=7),
                     "ResourceNotFoundException")


def test_carriage_returns_do_not_split_events(client, logs):
    """Each \\n ends one log event; runtimes keep multi-line records together with \\r."""
    name = h.new_name("crlog")
    h.create_custom_function(client, name, h.shell_bootstrap(r"printf 'first part\rsecond part\rthird part\n'" + '\nrespond "$EVENT"'))
    result = h.invoke_ok(client, name, {})
    assert "first part\rsecond part\rthird part\n" in result.log, repr(result.log)

    def events():
        try:
            found = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern="part")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        return found or None

    found = h.wait_until(10, events, desc="the multi-part record")
    assert [e["message"] for e in found] == ["first part\rsecond part\rthird part\n"], found


@pytest.mark.extra
def test_unknown_log_stream(logs, logged):
    """CloudWatch Logs answers GetLogEvents on a missing stream of an existing group with
    ResourceNotFoundException ("The specified log stream does not exist.")."""
    events_once_complete(logs, logged)
    h.logs_api_error(logs, lambda: logs.get_log_events(logGroupName=logged["group"], logStreamName="2020/01/01/[$LATEST]nope"),
                     "ResourceNotFoundException")


def test_failed_invocations_are_logged(server, client, logs):
    name = h.new_name("faillog")
    h.create_custom_function(client, name, h.shell_bootstrap('echo "dying"\nexit 7'))
    result = h.invoke(client, name, {})
    assert result.function_error == "Unhandled"
    request_id = result.request_id
    group = f"/aws/lambda/{name}"

    def lines():
        try:
            events = logs.filter_log_events(logGroupName=group)["events"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        text = [e["message"].rstrip("\n") for e in events]
        return text if any(t.startswith(f"REPORT RequestId: {request_id}") for t in text) else None

    text = h.wait_until(10, lines, desc="the failed invocation's logs")
    assert "dying" in text
    assert f"RequestId: {request_id} Error: Runtime exited with error: exit status 7" in text, text
    assert "Runtime.ExitError" in text, text
