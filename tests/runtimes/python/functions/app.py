"""Fixture function for the runtime tests: one module, many handlers."""

import collections
import decimal
import logging
import os
import sys
import time

INIT_COUNT = {"imports": 0, "invokes": 0}
INIT_COUNT["imports"] += 1
print("app: module imported")

Point = collections.namedtuple("Point", "x y")


def echo(event, context):
    return event


def context_fields(event, context):
    cc = context.client_context
    identity = context.identity
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "memory_limit_type": type(context.memory_limit_in_mb).__name__,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
        "client_context": None if cc is None else {
            "installation_id": cc.client.installation_id if cc.client else None,
            "app_title": cc.client.app_title if cc.client else None,
            "custom": cc.custom,
            "env": cc.env,
        },
        "tenant_id": context.tenant_id,
        "repr": repr(context),
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID")},
        "event_type": type(event).__name__,
        "event_repr": repr(event),
    }


def runtime_state(event, context):
    root = logging.getLogger()
    return {
        "sys_path": sys.path,
        "root_level": root.level,
        "handlers": [type(h).__name__ for h in root.handlers],
        "formatter": [getattr(h.formatter, "_fmt", None) for h in root.handlers],
        "converter_is_gmtime": logging.Formatter.converter is time.gmtime,
        "stdout_line_buffering": getattr(sys.stdout, "line_buffering", None),
        "telemetry_fd_var": os.environ.get("_LAMBDA_TELEMETRY_LOG_FD"),
        "wrapped_by": os.environ.get("WRAPPED_BY"),
        "exec_wrapper_marker": os.environ.get("_KAPPA_EXEC_WRAPPER_APPLIED"),
        "argv": sys.argv,
    }


def count(event, context):
    INIT_COUNT["invokes"] += 1
    return dict(INIT_COUNT, pid=os.getpid())


def boom(event, context):
    def inner():
        raise ValueError("kaboom")
    inner()


class CustomError(Exception):
    pass


def custom_error(event, context):
    raise CustomError("first line\nsecond line")


def key_error(event, context):
    return {}["missing"]


def log_everything(event, context):
    root = logging.getLogger()
    print("plain print")
    print("print line 1\nprint line 2")
    root.debug("debug message")
    root.info("info message")
    root.warning("warning message %s", 42)
    root.error("multi\nline\nmessage")
    logging.getLogger("named.logger").critical("from a named logger")
    root.warning({"dict": "message"})
    root.warning("with extra", extra={"custom_key": "custom value"})
    try:
        1 / 0
    except ZeroDivisionError:
        root.exception("caught an exception")
    context.log("via context.log")
    return "logged"


def print_then_wait(event, context):
    # Without a trailing newline: only an unbuffered stdout lets the test see it now.
    sys.stdout.write("marker-%s" % event["marker"])
    deadline = time.time() + 10
    while not os.path.exists(event["release_file"]) and time.time() < deadline:
        time.sleep(0.01)
    return "released"


def return_set(event, context):
    return {1, 2}


def return_bytes(event, context):
    return b"\x00raw\xffbytes"


def return_special(event, context):
    return {
        "decimal": decimal.Decimal("1.10"),
        "decimal_int": decimal.Decimal("3"),
        "point": Point(1, 2),
        "nested_bytes": b"text",
        "nan": float("nan"),
        "unicode": "h\u00e9llo \u2603",
    }


def return_none(event, context):
    return None


def sleep_then_report(event, context):
    time.sleep(event.get("seconds", 0))
    return context.get_remaining_time_in_millis()


def exit_process(event, context):
    sys.exit(3)


def return_env(event, context):
    return {k: os.environ.get(k) for k in event["names"]}


not_callable = 5
