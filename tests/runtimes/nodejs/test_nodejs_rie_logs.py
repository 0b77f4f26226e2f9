"""console.* output as captured by the RIE from the runtime's stdout."""

from __future__ import annotations

import json
import re

TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([0-9a-f-]{36})\t([A-Z]+)\t(.*)$")


def _records(fn) -> list[tuple[str, str, str]]:
    fn.wait_for_log("END RequestId")
    out = []
    for line in fn.function_log_lines():
        m = TEXT_LINE.match(line)
        if m:
            out.append((m.group(2), m.group(3), m.group(4)))
    return out


def test_text_format_levels_and_request_id(rie_function):
    fn = rie_function("cjs", "index.logs")
    rid_body = fn.invoke({})
    assert rid_body.json() == "logged"
    recs = _records(fn)
    rids = {r[0] for r in recs}
    assert len(rids) == 1
    levels_msgs = [(lvl, msg) for _, lvl, msg in recs]
    assert ("INFO", "log line { a: 1 }") in levels_msgs
    assert ("INFO", "info formatted") in levels_msgs
    assert ("WARN", "warn line") in levels_msgs
    assert ("DEBUG", "debug line") in levels_msgs
    assert ("TRACE", "trace line") in levels_msgs  # console.trace prints no stack, as in Lambda
    assert ("INFO", "undefined") in levels_msgs  # bare console.log()
    err = next(msg for lvl, msg in levels_msgs if lvl == "ERROR")
    assert err.startswith("error line Error: logged error\r    at ")  # one record, \r-joined


def test_multiline_message_stays_one_record(rie_function):
    fn = rie_function("cjs", "index.logs")
    fn.invoke({})
    fn.wait_for_log("END RequestId")
    raw = fn.logs()
    assert "\tINFO\tfirst\rsecond\rthird\n" in raw
    assert "\nsecond" not in raw


def test_json_format(rie_function):
    fn = rie_function("cjs", "index.logs", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    fn.invoke({})
    fn.wait_for_log("END RequestId")
    records = []
    for line in fn.function_log_lines():
        if line.startswith("{"):
            records.append(json.loads(line))
    by_level = {}
    for r in records:
        by_level.setdefault(r["level"], []).append(r)
    assert set(records[0]) >= {"timestamp", "level", "requestId", "message"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", records[0]["timestamp"])
    assert {r["requestId"] for r in records} == {records[0]["requestId"]}
    info_msgs = [r.get("message") for r in by_level["INFO"]]
    assert "log line { a: 1 }" in info_msgs
    assert "info formatted" in info_msgs
    assert "first\nsecond\nthird" in info_msgs  # JSON keeps the newline escaped, one line
    err = by_level["ERROR"][0]
    assert err["message"].startswith("error line Error: logged error")
    assert err["errorType"] == "Error"
    assert err["errorMessage"] == "logged error"
    assert err["stackTrace"][0] == "Error: logged error"


def test_json_format_single_object_stays_structured(rie_function):
    fn = rie_function("cjs", "index.throwError", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    fn.invoke({})
    fn.wait_for_log("END RequestId")
    errors = [json.loads(l) for l in fn.function_log_lines() if l.startswith("{")]
    invoke_error = next(r for r in errors if r["level"] == "ERROR")
    assert invoke_error["message"]["errorType"] == "TypeError"
    assert invoke_error["message"]["errorMessage"] == "boom"
    assert invoke_error["message"]["stackTrace"][0] == "TypeError: boom"


def test_log_level_filter(rie_function):
    fn = rie_function(
        "cjs", "index.logs", env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN"}
    )
    fn.invoke({})
    fn.wait_for_log("END RequestId")
    levels = {json.loads(l)["level"] for l in fn.function_log_lines() if l.startswith("{")}
    assert levels == {"WARN", "ERROR"}


def test_init_logs_use_undefined_request_id(rie_function):
    fn = rie_function("cjs", "index.callbackWaits")  # callback handlers get a deprecation warning
    fn.invoke({})
    fn.wait_for_log("END RequestId")
    warn = next(l for l in fn.function_log_lines() if "\tWARN\t" in l)
    assert warn.split("\t")[1] == "undefined"
    assert "callback-based function handlers" in warn


def test_callback_warning_can_be_disabled(rie_function):
    fn = rie_function(
        "cjs", "index.callbackWaits", env={"AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING": "1"}
    )
    fn.invoke({})
    fn.wait_for_log("END RequestId")
    assert not [l for l in fn.function_log_lines() if "\tWARN\t" in l]
