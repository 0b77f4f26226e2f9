"""Helpers for the asynchronous-invocation tests (Invoke with InvocationType=Event, InvokeAsync,
event invoke configs, destinations, the async queue's metrics).

The functions are provided.al2023 custom runtimes in sh + curl (kappa_helpers.SHELL_RUNTIME).
What a test needs to observe (attempts, destination records, deliveries) the function prints
to stdout, one line per fact with a marker prefix; the tests read it back through the
CloudWatch Logs API on the same endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.request
from typing import Any

from botocore.exceptions import ClientError

import kappa_helpers as h

MAX_ASYNC_PAYLOAD = 1_048_576  # largest Event invocation payload

RETRY_DELAY_ENV = "KAPPA_ASYNC_RETRY_DELAY_SECS"

RECORD_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# The error document the failing functions post to /error (and so the responsePayload of a
# failure record).
ERROR_DOC = {"errorMessage": "async attempt failed", "errorType": "AsyncTestError"}

# Print the event on one line. JSON has no raw newline inside strings, so dropping newlines
# (whitespace between tokens) keeps the document intact.
_EVENT_ONE_LINE = "$(tr -d '\\n' < \"$EVENT\")"

# Prints "ATTEMPT <request id> <event>" and then fails with ERROR_DOC.
FAILING_HANDLER = f"""
  printf 'ATTEMPT %s %s\\n' "$REQUEST_ID" "{_EVENT_ONE_LINE}"
  fail '{json.dumps(ERROR_DOC, separators=(",", ":"))}'
"""

# Prints "ATTEMPT <request id> <event>" and answers {"handled": <event>}.
SUCCEEDING_HANDLER = f"""
  printf 'ATTEMPT %s %s\\n' "$REQUEST_ID" "{_EVENT_ONE_LINE}"
  printf '{{"handled":%s}}' "{_EVENT_ONE_LINE}" > "$RESPONSE"
  respond "$RESPONSE"
"""

# The destination function: prints "DEST_EVENT <record>" and answers {}.
DESTINATION_HANDLER = f"""
  printf 'DEST_EVENT %s\\n' "{_EVENT_ONE_LINE}"
  respond_text '{{}}'
"""


def async_env(retry_delay_secs: int = 1, **extra: str) -> dict[str, str]:
    env = {RETRY_DELAY_ENV: str(retry_delay_secs)}
    env.update(extra)
    return env


def function_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{h.REGION}:{h.ACCOUNT_ID}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


# --------------------------------------------------------------------------------------------
# Invoking


def invoke_event(client, name: str, payload: bytes | str | dict | list | None = None, **kwargs) -> dict:
    """Invoke with InvocationType=Event; require 202 and an empty body. Returns the response
    (with the body read into 'Body' and lower-cased HTTP headers in 'Headers')."""
    params: dict[str, Any] = {"FunctionName": name, "InvocationType": "Event"}
    if payload is not None:
        params["Payload"] = json.dumps(payload).encode() if isinstance(payload, (dict, list)) else payload
    params.update(kwargs)
    resp = client.invoke(**params)
    body = resp["Payload"].read()
    headers = {k.lower(): v for k, v in resp["ResponseMetadata"]["HTTPHeaders"].items()}
    assert resp["StatusCode"] == 202, f"Event invoke answered {resp['StatusCode']}: {body[:500]!r} {headers}"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202, resp["ResponseMetadata"]
    assert body == b"", f"an Event invoke must answer with an empty body, got {body[:500]!r}"
    resp["Body"] = body
    resp["Headers"] = headers
    return resp


def json_of_size(size: int, key: str = "pad", extra: dict | None = None) -> bytes:
    """A JSON object of exactly `size` bytes: {...extra, "pad": "xxx…"}."""
    head = json.dumps(dict(extra or {}), separators=(",", ":"))[:-1]
    prefix = (head + "," if head != "{" else head) + f'"{key}":"'
    filler = size - len(prefix) - 2
    assert filler >= 0, size
    data = (prefix + "x" * filler + '"}').encode()
    assert len(data) == size and json.loads(data)
    return data


# --------------------------------------------------------------------------------------------
# Reading logs


def log_group(name: str) -> str:
    return f"/aws/lambda/{name}"


def log_events(logs, name: str, pattern: str | None = None) -> list[dict]:
    """Every log event of the function's group (matching `pattern`), following nextToken;
    [] if the group does not exist yet."""
    params: dict[str, Any] = {"logGroupName": log_group(name)}
    if pattern:
        params["filterPattern"] = pattern
    events: list[dict] = []
    seen_tokens = set()
    while True:
        try:
            page = logs.filter_log_events(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []
            raise
        events.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            return events
        assert token not in seen_tokens, f"FilterLogEvents repeated nextToken {token!r}"
        seen_tokens.add(token)
        params["nextToken"] = token


def marked(logs, name: str, marker: str) -> list[tuple[int, str]]:
    """(timestamp ms, rest of line) of the function's log lines that start with `marker `."""
    out = []
    for event in log_events(logs, name, marker):
        for line in event["message"].splitlines():
            if line.startswith(marker + " "):
                out.append((event["timestamp"], line[len(marker) + 1:]))
    out.sort(key=lambda item: item[0])
    return out


@dataclasses.dataclass
class Attempt:
    timestamp: int  # ms, of the log event
    request_id: str
    event: Any


def attempts(logs, name: str, tag: str | None = None) -> list[Attempt]:
    """The ATTEMPT lines of a function (FAILING_HANDLER / SUCCEEDING_HANDLER), optionally only
    those whose event has {"tag": tag}."""
    out = []
    for ts, rest in marked(logs, name, "ATTEMPT"):
        request_id, _, event_text = rest.partition(" ")
        try:
            event = json.loads(event_text)
        except ValueError:
            event = event_text
        if tag is not None and not (isinstance(event, dict) and event.get("tag") == tag):
            continue
        out.append(Attempt(ts, request_id, event))
    return out


def destination_records(logs, dest_name: str, request_id: str | None = None) -> list[dict]:
    """The invocation records the destination function printed (DESTINATION_HANDLER)."""
    out = []
    for _, rest in marked(logs, dest_name, "DEST_EVENT"):
        try:
            record = json.loads(rest)
        except ValueError as exc:
            raise AssertionError(f"destination got an event that is not JSON: {rest[:2000]!r}") from exc
        if request_id is not None:
            if not (isinstance(record, dict) and record.get("requestContext", {}).get("requestId") == request_id):
                continue
        out.append(record)
    return out


def start_lines(logs, name: str, request_id: str) -> list[dict]:
    """The platform's START lines for one request id."""
    return [e for e in log_events(logs, name, f'"START RequestId: {request_id}"')
            if e["message"].startswith(f"START RequestId: {request_id}")]


# --------------------------------------------------------------------------------------------
# Metrics


METRIC_LINE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{[^}]*\})?\s+(?P<value>\S+)(\s+\d+)?$")


def metrics_text(server: h.KappaServer) -> tuple[int, str, str]:
    with urllib.request.urlopen(server.url + "/kappa/metrics", timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def parse_metrics(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text exposition, name -> value."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = METRIC_LINE_RE.match(line.strip())
        assert m, f"not a Prometheus sample line: {line!r}"
        if not m.group("labels"):
            values[m.group("name")] = float(m.group("value"))
    return values


def metrics(server: h.KappaServer) -> dict[str, float]:
    status, _, text = metrics_text(server)
    assert status == 200
    return parse_metrics(text)


def queue_depth(server: h.KappaServer) -> float:
    return metrics(server)["kappa_async_queue_depth"]


def wait_queue_empty(server: h.KappaServer, timeout: float = 60.0) -> None:
    h.wait_until(timeout, lambda: queue_depth(server) == 0, interval=0.1, desc="async queue depth 0")


def wait_for(timeout: float, cond, desc: str, interval: float = 0.1):
    """wait_until with a slower default poll (each poll reads logs over HTTP)."""
    return h.wait_until(timeout, cond, interval=interval, desc=desc)


def now_ms() -> int:
    return int(time.time() * 1000)
