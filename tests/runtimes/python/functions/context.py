"""A function module named like one of the runtime's own modules."""


def handler(event, context):
    return {"module": __name__, "file": __file__}
