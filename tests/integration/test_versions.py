"""Function versions: PublishVersion, ListVersionsByFunction, qualifiers on every operation,
deleting one version, and the immutability of published versions."""

from __future__ import annotations

import json

import pytest

import kappa_helpers as h

ARN = f"arn:aws:lambda:{h.REGION}:{h.ACCOUNT_ID}:function"

PY_APP = '''\
import os

MARK = {mark!r}


def handler(event, context):
    return {{
        "mark": MARK,
        "color": os.environ.get("COLOR"),
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "stream": context.log_stream_name,
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
    }}
'''


def app_zip(mark: str) -> bytes:
    return h.zip_package({"app.py": PY_APP.format(mark=mark)}, executables=())


def make_fn(client, name: str, mark: str = "one", **overrides) -> dict:
    params = {"Runtime": "python3.12", "Handler": "app.handler", "Timeout": 20,
              "Environment": {"Variables": {"COLOR": "red"}}}
    params.update(overrides)
    return h.create_function(client, name, app_zip(mark), **params)


def update_code(client, name: str, mark: str, **kwargs) -> dict:
    return client.update_function_code(FunctionName=name, ZipFile=app_zip(mark), **kwargs)


# ---- PublishVersion --------------------------------------------------------------------------


def test_publish_version_snapshots_latest(client, fn_name):
    created = make_fn(client, fn_name, Description="the latest")
    v1 = h.strip_meta(client.publish_version(FunctionName=fn_name, Description="first"))
    assert v1["Version"] == "1"
    assert v1["FunctionArn"] == f"{ARN}:{fn_name}:1"
    assert v1["Description"] == "first"
    assert v1["CodeSha256"] == created["CodeSha256"]
    assert v1["Environment"] == {"Variables": {"COLOR": "red"}}
    assert v1["RevisionId"] != created["RevisionId"]
    # GetFunctionConfiguration of the version reports the same snapshot.
    got = h.strip_meta(client.get_function_configuration(FunctionName=fn_name, Qualifier="1"))
    assert got["Version"] == "1" and got["FunctionArn"] == f"{ARN}:{fn_name}:1"
    assert got["Description"] == "first"
    latest = client.get_function_configuration(FunctionName=fn_name)
    assert latest["Version"] == "$LATEST" and latest["FunctionArn"] == f"{ARN}:{fn_name}"
    assert latest["Description"] == "the latest"


def test_publish_returns_the_last_version_when_nothing_changed(client, fn_name):
    make_fn(client, fn_name)
    v1 = client.publish_version(FunctionName=fn_name)
    again = client.publish_version(FunctionName=fn_name, Description="other words")
    assert again["Version"] == "1" and again["RevisionId"] == v1["RevisionId"]
    client.update_function_configuration(FunctionName=fn_name, Timeout=21)
    assert client.publish_version(FunctionName=fn_name)["Version"] == "2"
    update_code(client, fn_name, "two")
    assert client.publish_version(FunctionName=fn_name)["Version"] == "3"
    # A change of $LATEST's description is a change of its configuration.
    client.update_function_configuration(FunctionName=fn_name, Description="new words")
    assert client.publish_version(FunctionName=fn_name)["Version"] == "4"
    # Code changed and changed back: the same code and configuration as version 4.
    update_code(client, fn_name, "three")
    update_code(client, fn_name, "two")
    assert client.publish_version(FunctionName=fn_name)["Version"] == "4"


def test_publish_checks_code_sha256_and_revision_id(client, fn_name):
    created = make_fn(client, fn_name)
    wrong = h.code_sha256(b"something else")
    err = h.api_error(client, lambda: client.publish_version(FunctionName=fn_name, CodeSha256=wrong),
                      400, "InvalidParameterValueException")
    assert err.message == (
        f"CodeSHA256 ({wrong}) is different from current CodeSHA256 in $LATEST ({created['CodeSha256']}). "
        "Please try again with the CodeSHA256 in $LATEST.")
    err = h.api_error(client, lambda: client.publish_version(FunctionName=fn_name, RevisionId="stale"),
                      412, "PreconditionFailedException")
    assert err.message == ("The Revision Id provided does not match the latest Revision Id. "
                           "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
    assert client.list_versions_by_function(FunctionName=fn_name)["Versions"][1:] == []
    ok = client.publish_version(FunctionName=fn_name, CodeSha256=created["CodeSha256"],
                                RevisionId=created["RevisionId"])
    assert ok["Version"] == "1"


def test_publish_description_limit(client, raw_client, fn_name):
    make_fn(client, fn_name)
    assert client.publish_version(FunctionName=fn_name, Description="d" * 256)["Description"] == "d" * 256
    update_code(client, fn_name, "two")
    err = h.api_error(raw_client, lambda: raw_client.publish_version(FunctionName=fn_name, Description="d" * 257),
                      400, "ValidationException")
    assert err.message == ("1 validation error detected: Value '" + "d" * 257 + "' at 'description' failed to "
                           "satisfy constraint: Member must have length less than or equal to 256")
    assert [v["Version"] for v in client.list_versions_by_function(FunctionName=fn_name)["Versions"]] == ["$LATEST", "1"]


def test_publish_of_a_missing_function(client):
    err = h.api_error(client, lambda: client.publish_version(FunctionName="no-such-fn-v"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:no-such-fn-v"


def test_create_and_update_code_with_publish(client, fn_name):
    created = h.create_function(client, fn_name, app_zip("one"), Runtime="python3.12", Handler="app.handler",
                                Publish=True)
    assert created["Version"] == "1" and created["FunctionArn"] == f"{ARN}:{fn_name}:1"
    updated = update_code(client, fn_name, "two", Publish=True)
    assert updated["Version"] == "2"
    assert h.invoke_ok(client, fn_name, Qualifier="1").json()["mark"] == "one"
    assert h.invoke_ok(client, fn_name, Qualifier="2").json()["mark"] == "two"


# ---- ListVersionsByFunction ------------------------------------------------------------------


def test_list_versions_latest_first_and_pages(client, raw_client, fn_name):
    make_fn(client, fn_name)
    for i in range(4):
        client.publish_version(FunctionName=fn_name)
        client.update_function_configuration(FunctionName=fn_name, Timeout=30 + i)
    listed = client.list_versions_by_function(FunctionName=fn_name)
    assert [v["Version"] for v in listed["Versions"]] == ["$LATEST", "1", "2", "3", "4"]
    assert "NextMarker" not in listed
    assert listed["Versions"][0]["FunctionArn"] == f"{ARN}:{fn_name}:$LATEST"
    assert listed["Versions"][2]["FunctionArn"] == f"{ARN}:{fn_name}:2"
    seen, marker = [], None
    while True:
        kwargs = {"Marker": marker} if marker else {}
        page = client.list_versions_by_function(FunctionName=fn_name, MaxItems=2, **kwargs)
        seen += [v["Version"] for v in page["Versions"]]
        assert len(page["Versions"]) <= 2
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2", "3", "4"]
    paginated = [v["Version"] for p in client.get_paginator("list_versions_by_function").paginate(
        FunctionName=fn_name, PaginationConfig={"PageSize": 3}) for v in p["Versions"]]
    assert paginated == seen
    for bad, bound in ((0, "greater than or equal to 1"), (10001, "less than or equal to 10000")):
        err = h.api_error(raw_client, lambda: raw_client.list_versions_by_function(FunctionName=fn_name, MaxItems=bad),
                          400, "ValidationException")
        assert err.message == (f"1 validation error detected: Value '{bad}' at 'maxItems' failed to satisfy "
                               f"constraint: Member must have value {bound}")
    assert len(client.list_versions_by_function(FunctionName=fn_name, MaxItems=10000)["Versions"]) == 5


def test_list_versions_of_a_missing_function(client):
    err = h.api_error(client, lambda: client.list_versions_by_function(FunctionName="no-such-fn-lv"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:no-such-fn-lv"


# ---- immutability, qualifiers and ARN forms --------------------------------------------------


def test_versions_are_immutable_after_latest_changes(client, fn_name):
    make_fn(client, fn_name, "one")
    assert h.invoke_ok(client, fn_name).json()["mark"] == "one"
    client.publish_version(FunctionName=fn_name)
    update_code(client, fn_name, "two")
    client.update_function_configuration(FunctionName=fn_name, Environment={"Variables": {"COLOR": "blue"}},
                                         MemorySize=256)
    v1 = h.invoke_ok(client, fn_name, Qualifier="1")
    assert v1.json()["mark"] == "one" and v1.json()["color"] == "red"
    assert v1.executed_version == "1"
    assert v1.json()["version"] == "1"
    assert v1.json()["arn"] == f"{ARN}:{fn_name}:1"
    assert "Memory Size: 128 MB" in v1.log
    latest = h.invoke_ok(client, fn_name)
    assert latest.json()["mark"] == "two" and latest.json()["color"] == "blue"
    assert latest.executed_version == "$LATEST" and latest.json()["version"] == "$LATEST"
    assert client.get_function(FunctionName=fn_name, Qualifier="1")["Configuration"]["MemorySize"] == 128
    assert client.get_function(FunctionName=fn_name)["Configuration"]["MemorySize"] == 256


def test_latest_and_a_version_never_share_an_environment(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    latest = h.invoke_ok(client, fn_name).json()
    v1 = h.invoke_ok(client, fn_name, Qualifier="1").json()
    assert latest["stream"] != v1["stream"]
    assert "[$LATEST]" in latest["stream"] and "[1]" in v1["stream"]
    # Warm again: each qualifier gets its own environment back.
    assert h.invoke_ok(client, fn_name, Qualifier="1").json()["stream"] == v1["stream"]
    assert h.invoke_ok(client, fn_name, Qualifier="$LATEST").json()["stream"] == latest["stream"]


def test_every_arn_form_names_a_version(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    for form in (f"{fn_name}:1", f"{h.ACCOUNT_ID}:function:{fn_name}:1", f"{ARN}:{fn_name}:1"):
        assert client.get_function_configuration(FunctionName=form)["Version"] == "1"
        assert h.invoke_ok(client, form).executed_version == "1"
        assert client.get_function(FunctionName=form)["Configuration"]["FunctionArn"] == f"{ARN}:{fn_name}:1"
    # The same qualifier in both places is accepted; different ones are not.
    assert client.get_function_configuration(FunctionName=f"{fn_name}:1", Qualifier="1")["Version"] == "1"
    for call in (lambda: client.get_function_configuration(FunctionName=f"{fn_name}:1", Qualifier="$LATEST"),
                 lambda: client.invoke(FunctionName=f"{ARN}:{fn_name}:1", Qualifier="2"),
                 lambda: client.delete_function(FunctionName=f"{fn_name}:1", Qualifier="2")):
        err = h.api_error(client, call, 400, "InvalidParameterValueException")
        assert err.message == "The derived qualifier from the function name does not match the specified qualifier."


def test_missing_versions_are_not_found(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    for call in (lambda: client.get_function(FunctionName=fn_name, Qualifier="2"),
                 lambda: client.get_function_configuration(FunctionName=f"{fn_name}:7"),
                 lambda: client.invoke(FunctionName=fn_name, Qualifier="2")):
        err = h.api_error(client, call, 404, "ResourceNotFoundException")
        assert err.message.startswith(f"Function not found: {ARN}:{fn_name}:"), err


# ---- deleting versions -----------------------------------------------------------------------


def test_delete_one_version_and_numbers_are_never_reused(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    update_code(client, fn_name, "two")
    client.publish_version(FunctionName=fn_name)
    client.delete_function(FunctionName=fn_name, Qualifier="2")
    assert [v["Version"] for v in client.list_versions_by_function(FunctionName=fn_name)["Versions"]] == ["$LATEST", "1"]
    err = h.api_error(client, lambda: client.invoke(FunctionName=fn_name, Qualifier="2"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{fn_name}:2"
    err = h.api_error(client, lambda: client.delete_function(FunctionName=fn_name, Qualifier="2"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{fn_name}:2"
    # $LATEST still differs from version 1, so the next publish is number 3, not 2.
    assert client.publish_version(FunctionName=fn_name)["Version"] == "3"
    assert h.invoke_ok(client, fn_name, Qualifier="1").json()["mark"] == "one"
    client.delete_function(FunctionName=f"{fn_name}:1")
    assert [v["Version"] for v in client.list_versions_by_function(FunctionName=fn_name)["Versions"]] == ["$LATEST", "3"]


def test_latest_cannot_be_deleted_alone(client, fn_name):
    make_fn(client, fn_name)
    err = h.api_error(client, lambda: client.delete_function(FunctionName=fn_name, Qualifier="$LATEST"), 400,
                      "InvalidParameterValueException")
    assert err.message == "$LATEST version cannot be deleted without deleting the function."


def test_version_referenced_by_an_alias_cannot_be_deleted(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    client.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    err = h.api_error(client, lambda: client.delete_function(FunctionName=fn_name, Qualifier="1"), 409,
                      "ResourceConflictException")
    assert err.message == "Unable to delete version because the following aliases reference it: [live]"
    assert h.invoke_ok(client, fn_name, Qualifier="1").json()["mark"] == "one"


def test_deleting_the_function_deletes_versions_and_aliases(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    client.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    client.delete_function(FunctionName=fn_name)
    make_fn(client, fn_name, "again")
    assert [v["Version"] for v in client.list_versions_by_function(FunctionName=fn_name)["Versions"]] == ["$LATEST"]
    assert client.list_aliases(FunctionName=fn_name)["Aliases"] == []
    # A new function of the same name starts its numbering again.
    assert client.publish_version(FunctionName=fn_name)["Version"] == "1"
    assert h.invoke_ok(client, fn_name, Qualifier="1").json()["mark"] == "again"


def test_versions_survive_a_restart(server_factory, fn_name):
    srv = server_factory()
    client = srv.client()
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    update_code(client, fn_name, "two")
    client.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    srv.stop()
    srv.start()
    client = srv.client()
    assert h.invoke_ok(client, fn_name, Qualifier="live").json()["mark"] == "one"
    assert h.invoke_ok(client, fn_name).json()["mark"] == "two"
    assert client.publish_version(FunctionName=fn_name)["Version"] == "2"


def test_event_invoke_config_on_a_version(client, fn_name):
    make_fn(client, fn_name)
    client.publish_version(FunctionName=fn_name)
    put = client.put_function_event_invoke_config(FunctionName=fn_name, Qualifier="1", MaximumRetryAttempts=0)
    assert put["FunctionArn"] == f"{ARN}:{fn_name}:1"
    assert client.get_function_event_invoke_config(FunctionName=fn_name, Qualifier="1")["MaximumRetryAttempts"] == 0
    err = h.api_error(client, lambda: client.put_function_event_invoke_config(FunctionName=fn_name, Qualifier="9",
                                                                             MaximumRetryAttempts=0),
                      404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{fn_name}:9"


# ---- AWS CLI ---------------------------------------------------------------------------------


def test_cli_publish_list_and_invoke_a_version(server, client, fn_name, tmp_path):
    make_fn(client, fn_name)
    published = h.aws_cli(server.url, tmp_path, "lambda", "publish-version", "--function-name", fn_name,
                          "--description", "from the cli")
    assert published["Version"] == "1" and published["Description"] == "from the cli"
    listed = h.aws_cli(server.url, tmp_path, "lambda", "list-versions-by-function", "--function-name", fn_name)
    assert [v["Version"] for v in listed["Versions"]] == ["$LATEST", "1"]
    out = tmp_path / "out.json"
    result = h.aws_cli(server.url, tmp_path, "lambda", "invoke", "--function-name", fn_name, "--qualifier", "1",
                       str(out))
    assert result["ExecutedVersion"] == "1"
    assert json.loads(out.read_text())["mark"] == "one"
    proc = h.aws_cli(server.url, tmp_path, "lambda", "delete-function", "--function-name", fn_name,
                     "--qualifier", "$LATEST", check=False)
    assert proc.returncode != 0 and "InvalidParameterValueException" in proc.stderr


@pytest.mark.parametrize("qualifier, constraint", [
    ("bad!", "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"),
    ("q" * 129, "Member must have length less than or equal to 128"),
])
def test_qualifier_constraints(client, raw_client, fn_name, qualifier, constraint):
    make_fn(client, fn_name)
    for call in (lambda: raw_client.invoke(FunctionName=fn_name, Qualifier=qualifier),
                 lambda: raw_client.get_function(FunctionName=fn_name, Qualifier=qualifier),
                 lambda: raw_client.get_function_configuration(FunctionName=fn_name, Qualifier=qualifier)):
        err = h.api_error(raw_client, call, 400, "ValidationException")
        assert err.message == (f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to "
                               f"satisfy constraint: {constraint}")
    # Just under the length limit is a well-formed qualifier that names nothing.
    err = h.api_error(client, lambda: client.invoke(FunctionName=fn_name, Qualifier="q" * 128), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{fn_name}:{'q' * 128}"
