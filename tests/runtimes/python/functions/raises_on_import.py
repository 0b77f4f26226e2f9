def helper():
    raise RuntimeError("failed during init")


helper()


def handler(event, context):
    return "unreachable"
