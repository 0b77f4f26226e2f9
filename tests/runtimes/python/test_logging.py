"""Log output, as read from the RIE's stdout: Lambda's text and JSON formats."""

import json
import os
import re

from runtime_harness import FUNCTIONS, RUNTIME_VERSION

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_text_format(start_rie):
    rie = start_rie("app.log_everything")
    status, body = rie.invoke_json()
    assert (status, body) == (200, "logged")
    rie.wait_for_line(lambda line: line == "via context.log")
    lines = rie.lines()
    records = [line for line in lines if line.startswith("[")]
    request_id = re.search(UUID, records[0]).group(0)

    def record(level, message):
        pattern = r"\[%s\]\t%s\t%s\t%s" % (level, TIMESTAMP, request_id, re.escape(message))
        assert any(re.fullmatch(pattern, line) for line in records), (level, message, records)

    # The root logger stays at WARNING (Python's default) unless AWS_LAMBDA_LOG_LEVEL says.
    assert not any("debug message" in line or "info message" in line for line in lines)
    record("WARNING", "warning message 42")
    record("ERROR", "multi\rline\rmessage")  # one line: inner newlines become \r
    record("CRITICAL", "from a named logger")
    record("WARNING", "{'dict': 'message'}")
    record("WARNING", "with extra")
    # A logged exception is one line too, traceback included.
    record("ERROR", "caught an exception\rTraceback (most recent call last):\r"
                    '  File "%s", line %d, in log_everything\r'
                    "    1 / 0\r%s"
                    "ZeroDivisionError: division by zero"
           % (os.path.join(FUNCTIONS, "app.py"), _line_of("        1 / 0"),
              "" if RUNTIME_VERSION < (3, 11) else "    ~~^~~\r"))
    # print() output is left alone: one line per line printed.
    assert "plain print" in lines
    assert lines.index("print line 1") + 1 == lines.index("print line 2")
    # context.log() writes its text as is, one line per call.
    assert "via context.log" in lines


def _line_of(text):
    with open(os.path.join(FUNCTIONS, "app.py")) as source:
        return source.read().split("\n").index(text) + 1


def test_init_logs_have_an_empty_request_id(start_rie):
    rie = start_rie("jsonlogs.handler")
    rie.invoke_json()
    line = rie.wait_for_line(lambda line: "init-time warning" in line)
    assert re.fullmatch(r"\[WARNING\]\t%s\t\tinit-time warning" % TIMESTAMP, line)


def test_log_level_from_environment(start_rie):
    rie = start_rie("app.log_everything", env={"AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    rie.invoke_json()
    rie.wait_for_line(lambda line: line.startswith("[DEBUG]\t") and "debug message" in line)
    rie.wait_for_line(lambda line: line.startswith("[INFO]\t") and "info message" in line)
    rie2 = start_rie("app.log_everything", env={"AWS_LAMBDA_LOG_LEVEL": "ERROR"})
    rie2.invoke_json()
    rie2.wait_for_line(lambda line: line == "via context.log")
    assert not any("warning message" in line for line in rie2.lines())
    assert any(line.startswith("[ERROR]\t") for line in rie2.lines())


def test_json_format(start_rie):
    rie = start_rie("jsonlogs.handler",
                    env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    status, body = rie.invoke_json()
    assert (status, body) == (200, "logged")
    rie.wait_for_line(lambda line: line == "plain print")
    records = [json.loads(line) for line in rie.lines() if line.startswith("{")]
    by_message = {str(r.get("message")): r for r in records}
    request_id = by_message["info message"]["requestId"]
    assert re.fullmatch(UUID, request_id)

    init = by_message["init-time warning"]
    assert init["requestId"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", init["timestamp"])
    assert "debug message" not in by_message  # level INFO
    assert list(by_message["info message"]) == ["timestamp", "level", "message", "logger",
                                                "requestId"]
    assert by_message["info message"]["level"] == "INFO"
    assert by_message["info message"]["logger"] == "root"
    assert by_message["multi\nline"]["level"] == "WARNING"
    assert by_message["from a named logger"]["logger"] == "named.logger"
    assert by_message["from a named logger"]["level"] == "ERROR"
    assert by_message["{'dict': 'message'}"]["message"] == {"dict": "message"}
    extra = by_message["with extra"]
    assert (extra["custom_key"], extra["number"]) == ("custom value", 3)
    exception = by_message["caught an exception"]
    assert list(exception) == ["timestamp", "level", "message", "logger", "stackTrace",
                               "errorType", "errorMessage", "requestId", "location"]
    assert exception["errorType"] == "KeyError"
    assert exception["errorMessage"] == "'k'"
    assert exception["location"].startswith(os.path.join(FUNCTIONS, "jsonlogs.py") + ":handler:")


def test_json_format_millisecond_timestamps(start_rie):
    rie = start_rie("jsonlogs.handler", env={"AWS_LAMBDA_LOG_FORMAT": "JSON",
                                             "AWS_LAMBDA_LOG_TIMESTAMP_PRECISION": "milliseconds"})
    rie.invoke_json()
    record = json.loads(rie.wait_for_line(lambda line: "init-time warning" in line))
    assert re.fullmatch(TIMESTAMP, record["timestamp"])


def test_json_format_error_report(start_rie):
    rie = start_rie("jsonlogs.fail", env={"AWS_LAMBDA_LOG_FORMAT": "JSON"})
    _, error = rie.invoke_json()
    logged = json.loads(rie.wait_for_line(lambda line: '"errorType": "ValueError"' in line))
    assert list(logged) == ["timestamp", "level", "errorMessage", "errorType", "requestId",
                            "stackTrace"]
    assert logged["level"] == "ERROR"
    assert logged["errorMessage"] == "json kaboom"
    assert logged["requestId"] == error["requestId"]
    assert logged["stackTrace"] == error["stackTrace"]
