"""Error documents as Lambda's Python runtime writes them, and the X-Ray cause."""

import json
import os
import traceback

RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Fault(Exception):
    """A failure the runtime itself diagnoses (bad handler, unmarshalable data, ...)."""

    def __init__(self, error_type, message, stack_trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


def safe_str(value):
    try:
        return str(value)
    except Exception:
        return "<unprintable %s object>" % type(value).__name__


def _user_frames(tb):
    """Frames of ``tb`` without the runtime's own leading frames."""
    frames = traceback.extract_tb(tb)
    for index, frame in enumerate(frames):
        if not frame.filename.startswith(RUNTIME_DIR + os.sep):
            return frames[index:]
    return frames[-1:]  # failed calling the handler itself: show where it was called


def _format_frames(frames):
    """``stackTrace`` entries: one string per frame, the source line without carets."""
    out = []
    for frame in frames:
        entry = '  File "%s", line %s, in %s\n' % (frame.filename, frame.lineno, frame.name)
        if frame.line:
            entry += "    %s\n" % frame.line.strip()
        out.append(entry)
    return out


def error_document(error_type, message, stack_trace, request_id):
    return {"errorMessage": message or "", "errorType": error_type or "",
            "requestId": request_id, "stackTrace": stack_trace}


def from_exception(exc, request_id):
    """(error document, X-Ray cause) for an exception raised by function code."""
    frames = _user_frames(exc.__traceback__)
    document = error_document(type(exc).__name__, safe_str(exc), _format_frames(frames),
                              request_id)
    paths = []
    for frame in frames:
        if frame.filename not in paths:
            paths.append(frame.filename)
    cause = {"working_directory": _cwd(), "exceptions": [{
        "message": document["errorMessage"], "type": document["errorType"],
        "stack": [{"label": f.name, "path": f.filename, "line": f.lineno} for f in frames]}],
        "paths": paths}
    return document, cause


def from_fault(fault, request_id):
    """(error document, X-Ray cause) for a failure the runtime diagnosed."""
    document = error_document(fault.error_type, fault.message, fault.stack_trace, request_id)
    cause = {"working_directory": _cwd(), "exceptions": [{
        "message": fault.message, "type": "LambdaValidationError", "stack": []}], "paths": []}
    return document, cause


def xray_cause_header(cause):
    """The Lambda-Runtime-Function-XRay-Error-Cause value, or None when it is too large."""
    text = json.dumps(cause, default=str)
    return text if len(text) < 1024 * 1024 else None


def _cwd():
    try:
        return os.getcwd()
    except OSError:
        return ""
