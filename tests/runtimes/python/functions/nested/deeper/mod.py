def handler(event, context):
    return {"module": __name__, "file": __file__}
