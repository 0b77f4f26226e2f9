"""JSON in and out: strict parsing of events, Lambda's rules for encoding results."""

import json
import os
import re
import sys

from .errors import Fault

_DECIMAL_TAG = "\x00kappa-decimal\x00"
_DECIMAL_TAG_RE = re.compile(r'"\\u0000kappa-decimal\\u0000([^"\\]*)"')
_SCALARS = (str, int, float, bool, type(None))


def writes_ascii_only():
    """Whether results escape non-ASCII text: up to python3.11 yes, from python3.12 no."""
    match = re.match(r"AWS_Lambda_python(\d+)\.(\d+)$", os.environ.get("AWS_EXECUTION_ENV", ""))
    return not match or (int(match.group(1)), int(match.group(2))) < (3, 12)


class ResultEncoder:
    """Encodes handler results the way Lambda's Python runtime does.

    On top of the standard ``json`` module: ``decimal.Decimal`` is written as the exact
    number (boto3 returns DynamoDB numbers as Decimals), ``bytes`` inside the result are
    decoded as UTF-8, objects with an ``_asdict()`` method (named tuples) become JSON
    objects, and NaN/Infinity are allowed. Encoding runs in the C encoder; the extra rules
    cost nothing unless such values are present.
    """

    def __init__(self, ensure_ascii):
        self._saw_decimal = False
        self._encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, allow_nan=True,
                                         default=self._default)

    def _default(self, obj):
        decimal = sys.modules.get("decimal")
        if decimal is not None and isinstance(obj, decimal.Decimal):
            self._saw_decimal = True
            return _DECIMAL_TAG + str(obj)
        if isinstance(obj, bytes):
            return obj.decode("utf-8")
        as_dict = getattr(obj, "_asdict", None)
        if as_dict is not None and callable(as_dict):
            return as_dict()
        raise TypeError("Object of type %s is not JSON serializable" % obj.__class__.__name__)

    def encode(self, obj):
        """The JSON text for ``obj``; raises what json raises for unencodable values."""
        if _holds_named_tuple(obj):
            obj = _named_tuples_to_dicts(obj, {})
        self._saw_decimal = False
        text = self._encoder.encode(obj)
        if self._saw_decimal:
            text = _DECIMAL_TAG_RE.sub(r"\1", text)
        return text


def _holds_named_tuple(obj):
    """Whether a tuple with ``_asdict`` (a named tuple) sits anywhere in ``obj``.

    The C encoder writes every tuple as an array without asking ``default``, so these
    have to be found beforehand.
    """
    if type(obj) in _SCALARS:
        return False
    stack = [obj]
    seen = set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        elif isinstance(item, tuple):
            if hasattr(item, "_asdict"):
                return True
            children = item
        else:
            continue
        stack.extend(child for child in children if type(child) not in _SCALARS)
    return False


def _named_tuples_to_dicts(obj, memo):
    if id(obj) in memo:  # shared and circular references stay shared and circular
        return memo[id(obj)]
    if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
        items = obj._asdict().items()
    elif isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        out = memo[id(obj)] = []
        out.extend(_named_tuples_to_dicts(value, memo) for value in obj)
        return out
    else:
        return obj
    out = memo[id(obj)] = {}
    for key, value in items:
        out[key] = _named_tuples_to_dicts(value, memo)
    return out


class _NonStandardConstant(Exception):
    pass


def _reject_constant(name):
    raise _NonStandardConstant(name)


def _position_of_constant(doc):
    """Index of the first NaN/Infinity token outside a string in ``doc``."""
    in_string = escaped = False
    for index, char in enumerate(doc):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "NI-" and doc.startswith(("NaN", "Infinity", "-Infinity"), index):
            return index
    return 0


def decode_event(body):
    """Parse an event as strict JSON (no NaN/Infinity); raises Runtime.UnmarshalError."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except _NonStandardConstant:
        doc = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        err = json.JSONDecodeError("Expecting value", doc, _position_of_constant(doc))
        raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % err) from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % err) from None
