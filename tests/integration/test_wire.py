"""HTTP/error wire format: malformed bodies, unknown routes, wrong methods, error shapes.

Raw requests are SigV4-signed with dummy credentials (as any AWS client would send them)."""

from __future__ import annotations

import base64
import json

import pytest

import kappa_helpers as h

JSON = {"Content-Type": "application/json"}


def test_malformed_json_body_on_create(server):
    resp = server.raw("POST", "/2015-03-31/functions", body="{not json", headers=JSON)
    assert resp.status == 400, resp
    code, _, _ = h.check_error_wire_format(resp.status, resp.headers, resp.body, "InvalidRequestContentException")
    assert code == "InvalidRequestContentException"


def test_malformed_json_body_unsigned(server):
    resp = server.raw("POST", "/2015-03-31/functions", body="{not json", headers=JSON, sign=False)
    assert resp.status == 400, resp
    h.check_error_wire_format(resp.status, resp.headers, resp.body, "InvalidRequestContentException")


@pytest.mark.extra
def test_malformed_json_body_on_update_configuration(server, client, fn_name):
    h.create_function(client, fn_name)
    resp = server.raw("PUT", f"/2015-03-31/functions/{fn_name}/configuration", body="{not json", headers=JSON)
    assert resp.status == 400, resp
    h.check_error_wire_format(resp.status, resp.headers, resp.body, "InvalidRequestContentException")


GARBAGE_BODIES = {
    "empty": "",
    "null": "null",
    "array": "[1, 2]",
    "string": '"x"',
    "wrong-types": json.dumps({"FunctionName": 5, "Runtime": [], "Role": {}, "Handler": 1, "Code": "x"}),
    "bad-base64": json.dumps({"FunctionName": "garbage-b64", "Runtime": "python3.12", "Role": h.ROLE,
                              "Handler": "app.handler", "Code": {"ZipFile": "!!! not base64 !!!"}}),
    "missing-code": json.dumps({"FunctionName": "garbage-nocode", "Runtime": "python3.12", "Role": h.ROLE,
                                "Handler": "app.handler"}),
    "huge-number": json.dumps({"FunctionName": "garbage-num", "Runtime": "python3.12", "Role": h.ROLE,
                               "Handler": "app.handler", "MemorySize": 10**30,
                               "Code": {"ZipFile": base64.b64encode(h.handler_zip()).decode()}}),
}


@pytest.mark.extra
@pytest.mark.parametrize("case", list(GARBAGE_BODIES))
def test_garbage_create_bodies_are_client_errors(server, case):
    resp = server.raw("POST", "/2015-03-31/functions", body=GARBAGE_BODIES[case], headers=JSON)
    assert 400 <= resp.status < 500, f"{case}: HTTP {resp.status} {resp.body[:300]!r}"
    h.check_error_wire_format(resp.status, resp.headers, resp.body)


def test_unknown_route_is_404_json(server):
    resp = server.raw("GET", "/nope")
    assert resp.status == 404, resp
    code, _, _ = h.check_error_wire_format(resp.status, resp.headers, resp.body)
    assert code == "UnknownOperationException", resp.headers


@pytest.mark.parametrize(
    "path",
    ["/nope/deeper?x=1", "/2015-03-31/unknown", "/2015-03-31/functions/a/b/c/d", "/2099-01-01/functions"],
)
def test_other_unknown_routes_are_404(server, path):
    resp = server.raw("GET", path)
    assert resp.status == 404, resp
    h.check_error_wire_format(resp.status, resp.headers, resp.body)


@pytest.mark.parametrize(
    "method,path",
    [
        ("PATCH", "/2015-03-31/functions"),
        ("DELETE", "/2015-03-31/functions"),
        ("PUT", "/2015-03-31/functions"),
        ("POST", "/2015-03-31/functions/somefn/configuration"),
        ("PATCH", "/2015-03-31/functions/somefn"),
        ("POST", "/2016-08-19/account-settings"),
        ("PUT", "/2017-03-31/tags/arn:aws:lambda:us-east-1:000000000000:function:x"),
    ],
)
def test_wrong_method_is_client_error(server, method, path):
    resp = server.raw(method, path, body="{}" if method in ("POST", "PUT", "PATCH") else b"", headers=JSON)
    assert 400 <= resp.status < 500, f"{method} {path}: HTTP {resp.status} {resp.body[:300]!r}"
    h.check_error_wire_format(resp.status, resp.headers, resp.body)


def test_not_found_uses_capital_message(server):
    resp = server.raw("GET", "/2015-03-31/functions/definitely-missing/configuration")
    assert resp.status == 404
    code, message, body = h.check_error_wire_format(resp.status, resp.headers, resp.body, "ResourceNotFoundException")
    assert "Message" in body and "message" not in body, body
    assert message == "Function not found: arn:aws:lambda:us-east-1:000000000000:function:definitely-missing"


def test_conflict_uses_lower_message(server, client, fn_name):
    h.create_function(client, fn_name)
    body = json.dumps(h.create_params(fn_name, None) | {"Code": {"ZipFile": base64.b64encode(h.handler_zip()).decode()}})
    resp = server.raw("POST", "/2015-03-31/functions", body=body, headers=JSON)
    assert resp.status == 409
    _, message, body = h.check_error_wire_format(resp.status, resp.headers, resp.body, "ResourceConflictException")
    assert "message" in body and "Message" not in body, body
    assert message == f"Function already exist: {fn_name}"


def test_invalid_parameter_uses_lower_message(server, raw_client):
    err = h.api_error(raw_client, lambda: raw_client.create_function(**h.create_params(h.new_name("x"), Runtime="cobol")),
                      400, "InvalidParameterValueException")
    assert "message" in err.body and "Message" not in err.body, err.body


def test_boto3_maps_errors_to_modeled_exceptions(server, client, fn_name):
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName=h.new_name("absent"))
    h.create_function(client, fn_name)
    with pytest.raises(client.exceptions.ResourceConflictException):
        client.create_function(**h.create_params(fn_name))
    with pytest.raises(client.exceptions.PreconditionFailedException):
        client.update_function_configuration(FunctionName=fn_name, Timeout=5,
                                             RevisionId="00000000-0000-0000-0000-000000000000")
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.create_function(**h.create_params(h.new_name("x"), Runtime="java21"))


def test_success_responses_are_json(server, client, fn_name):
    h.create_function(client, fn_name)
    resp = server.raw("GET", f"/2015-03-31/functions/{fn_name}/configuration")
    assert resp.status == 200
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    assert resp.json()["FunctionName"] == fn_name
