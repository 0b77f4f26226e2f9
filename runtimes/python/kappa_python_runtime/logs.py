"""Logging as Lambda's Python runtime sets it up.

The root logger gets one handler writing Lambda's text format
(``[LEVEL]\\t<time>Z\\t<request id>\\t<message>``) or, with AWS_LAMBDA_LOG_FORMAT=JSON,
Lambda's JSON objects. Records go to stdout, one line each, or as frames to the telemetry
fd when _LAMBDA_TELEMETRY_LOG_FD is set. print() is left alone: it writes to stdout.
"""

import io
import json
import logging
import os
import struct
import sys
import time
import traceback

from .errors import safe_str

# The request id of the invocation being handled ("" during init); set by the invoke loop.
current_request_id = ""
# Where log records, error reports and context.log() go; set by setup().
sink = None

TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

# AWS_LAMBDA_LOG_LEVEL values; TRACE has no Python level and maps to DEBUG.
LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
          "WARN": logging.WARNING, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
          "FATAL": logging.CRITICAL, "CRITICAL": logging.CRITICAL}

# Telemetry frame: 4-byte type, 4-byte length, 8-byte timestamp (µs), then the message.
_FRAME_MAGIC = 0xA55A0000
_FRAME_JSON = 0x2
_FRAME_TEXT = 0x3
_ERROR_LEVEL = 5


def lambda_level(levelno):
    """Lambda's level code (DEBUG=2 .. FATAL=6, 0 below DEBUG) for a Python level number."""
    if levelno >= logging.CRITICAL:
        return 6
    if levelno >= logging.ERROR:
        return 5
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 3
    if levelno >= logging.DEBUG:
        return 2
    return 0


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class StdoutSink:
    """Writes each record to stdout as one line: its inner newlines become ``\\r``.

    The platform cuts captured stdout into log events at ``\\n``; encoding a multi-line
    record's inner newlines as carriage returns keeps it one event, as Lambda's runtimes do.
    """

    def __init__(self, fd=1):
        self.fd = fd

    def write_record(self, text, levelno, is_json, timestamp=None):
        if text.endswith("\n"):
            text = text[:-1]
        self._write_line(text)

    def write_error(self, lines, is_json):
        self._write_line("\n".join(lines))

    def write_raw(self, text):
        self.write_record(text, 0, False)

    def _write_line(self, text):
        _write_all(self.fd, (text.replace("\n", "\r") + "\n").encode("utf-8", "replace"))


class FrameSink:
    """Writes framed records to the telemetry fd named by _LAMBDA_TELEMETRY_LOG_FD."""

    def __init__(self, fd, with_levels):
        self.fd = fd
        self.with_levels = with_levels  # text records carry levels only with a log level set

    def _frame(self, text, frame_format, level, timestamp):
        payload = text.encode("utf-8", "replace")
        frame_type = _FRAME_MAGIC | frame_format | (level << 2)
        micros = int((time.time() if timestamp is None else timestamp) * 1_000_000)
        _write_all(self.fd, struct.pack(">IIQ", frame_type, len(payload), micros) + payload)

    def write_record(self, text, levelno, is_json, timestamp=None):
        level = lambda_level(levelno) if (is_json or self.with_levels) else 0
        self._frame(text, _FRAME_JSON if is_json else _FRAME_TEXT, level, timestamp)

    def write_error(self, lines, is_json):
        self._frame("\n".join(lines), _FRAME_JSON if is_json else _FRAME_TEXT, _ERROR_LEVEL, None)

    def write_raw(self, text):
        self._frame(text, _FRAME_TEXT, 0, None)


class LambdaLoggerFilter(logging.Filter):
    """Stamps every record with the current request id as ``aws_request_id``."""

    def filter(self, record):
        record.aws_request_id = current_request_id
        return True


class LambdaLoggerHandler(logging.Handler):
    """The root logger's handler; writes formatted records to the log sink."""

    def __init__(self, log_sink, is_json):
        super().__init__()
        self.log_sink = log_sink
        self.is_json = is_json

    def emit(self, record):
        # Like Lambda's handler, and unlike logging.StreamHandler, a record that cannot be
        # formatted (wrong %-arguments, say) raises into the logging call.
        text = self.format(record)
        self.log_sink.write_record(text, record.levelno, self.is_json, record.created)


_JSON_LEVEL_NAMES = {6: "CRITICAL", 5: "ERROR", 4: "WARNING", 3: "INFO", 2: "DEBUG", 0: "NOTSET"}
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "aws_request_id", "taskName"}
_JSON_KEYS = frozenset({"timestamp", "level", "message", "logger", "requestId", "stackTrace",
                        "errorType", "errorMessage", "location"})


def json_timestamp(created, milliseconds):
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    if milliseconds:
        return "%s.%03dZ" % (seconds, min(int(round((created % 1) * 1000)), 999))
    return seconds + "Z"


class JsonFormatter(logging.Formatter):
    """Lambda's JSON application-log format (AWS_LAMBDA_LOG_FORMAT=JSON)."""

    def __init__(self, millisecond_timestamps=False):
        super().__init__()
        self.millisecond_timestamps = millisecond_timestamps

    def format(self, record):
        if isinstance(record.msg, dict) and not record.args:
            message = record.msg
        else:
            message = record.getMessage()
        doc = {
            "timestamp": json_timestamp(record.created, self.millisecond_timestamps),
            "level": _JSON_LEVEL_NAMES[lambda_level(record.levelno)],
            "message": message,
            "logger": record.name,
        }
        exc_info = record.exc_info
        has_exception = bool(exc_info) and exc_info[0] is not None
        if has_exception:
            doc["stackTrace"] = traceback.format_tb(exc_info[2])
            doc["errorType"] = exc_info[0].__name__
            doc["errorMessage"] = safe_str(exc_info[1])
        doc["requestId"] = getattr(record, "aws_request_id", current_request_id)
        if has_exception:
            doc["location"] = "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in _JSON_KEYS:
                doc[key] = value
        return json.dumps(doc, default=str, ensure_ascii=False)


def setup():
    """Install the root logger's handler and choose the sink; returns whether logs are JSON."""
    global sink
    is_json = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
    level_name = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    telemetry_fd = os.environ.pop("_LAMBDA_TELEMETRY_LOG_FD", None)
    if telemetry_fd is not None and telemetry_fd.isdigit():
        sink = FrameSink(int(telemetry_fd), with_levels=bool(level_name))
    else:
        sink = StdoutSink()

    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler(sink, is_json)
    if is_json:
        precision = os.environ.get("AWS_LAMBDA_LOG_TIMESTAMP_PRECISION", "").lower()
        handler.setFormatter(JsonFormatter(millisecond_timestamps=precision == "milliseconds"))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT))
    handler.addFilter(LambdaLoggerFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    if level_name in LEVELS:
        root.setLevel(LEVELS[level_name])
    return is_json


def log_error(document, is_json):
    """Log a reported error (init or invoke) the way Lambda's Python runtime does."""
    if is_json:
        record = {"timestamp": json_timestamp(time.time(), False), "level": "ERROR",
                  "errorMessage": document["errorMessage"], "errorType": document["errorType"],
                  "requestId": document["requestId"], "stackTrace": document["stackTrace"]}
        sink.write_error([json.dumps(record, default=str, ensure_ascii=False)], True)
        return
    description = "[ERROR]"
    if document["errorType"]:
        description += " " + document["errorType"]
    if document["errorMessage"]:
        description += (":" if document["errorType"] else "") + " " + document["errorMessage"]
    lines = [description, "Traceback (most recent call last):"]
    for entry in document["stackTrace"]:
        for line in entry.splitlines() or [""]:
            stripped = line.lstrip(" ")
            # Leading spaces become no-break spaces so log viewers keep the indentation.
            lines.append("\u00a0" * (len(line) - len(stripped)) + stripped)
    sink.write_error(lines, False)


def make_unbuffered(name, fd):
    """Replace sys.stdout or sys.stderr with a stream that writes straight to its fd."""
    old = getattr(sys, name)
    try:
        old.flush()
    except Exception:
        pass
    encoding = getattr(old, "encoding", None) or "utf-8"
    errors = getattr(old, "errors", None) or "strict"
    raw = io.FileIO(fd, "w", closefd=False)
    setattr(sys, name, io.TextIOWrapper(raw, encoding=encoding, errors=errors, write_through=True))
