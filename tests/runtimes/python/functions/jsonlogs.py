import logging

logging.getLogger().warning("init-time warning")


def handler(event, context):
    root = logging.getLogger()
    root.debug("debug message")
    root.info("info %s", "message")
    root.warning("multi\nline")
    logging.getLogger("named.logger").error("from a named logger")
    root.warning({"dict": "message"})
    root.warning("with extra", extra={"custom_key": "custom value", "number": 3})
    try:
        raise KeyError("k")
    except KeyError:
        root.exception("caught an exception")
    print("plain print")
    return "logged"


def fail(event, context):
    raise ValueError("json kaboom")
