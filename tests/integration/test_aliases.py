"""Aliases: CreateAlias, GetAlias, ListAliases, UpdateAlias, DeleteAlias, their rules, addressing
a function through an alias, and weighted routing between two versions."""

from __future__ import annotations

import collections
import json

import pytest

import kappa_helpers as h
from test_versions import ARN, app_zip, make_fn, update_code

STALE = ("The Revision Id provided does not match the latest Revision Id. "
         "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")


@pytest.fixture
def two_versions(client, fn_name):
    """A function with version 1 (mark one) and version 2 (mark two)."""
    make_fn(client, fn_name, "one")
    client.publish_version(FunctionName=fn_name)
    update_code(client, fn_name, "two")
    client.publish_version(FunctionName=fn_name)
    return fn_name


# ---- lifecycle -------------------------------------------------------------------------------


def test_alias_lifecycle(client, two_versions):
    name = two_versions
    created = h.strip_meta(client.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                                               Description="production"))
    assert created["AliasArn"] == f"{ARN}:{name}:live"
    assert created["Name"] == "live" and created["FunctionVersion"] == "1"
    assert created["Description"] == "production"
    assert "RoutingConfig" not in created
    assert h.strip_meta(client.get_alias(FunctionName=name, Name="live")) == created
    updated = client.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert updated["FunctionVersion"] == "2" and updated["Description"] == "production"
    assert updated["RevisionId"] != created["RevisionId"]
    assert h.invoke_ok(client, name, Qualifier="live").json()["mark"] == "two"
    client.delete_alias(FunctionName=name, Name="live")
    err = h.api_error(client, lambda: client.get_alias(FunctionName=name, Name="live"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Cannot find alias arn: {ARN}:{name}:live"
    err = h.api_error(client, lambda: client.invoke(FunctionName=name, Qualifier="live"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{name}:live"


def test_create_alias_conflicts_and_missing_targets(client, two_versions):
    name = two_versions
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    err = h.api_error(client, lambda: client.create_alias(FunctionName=name, Name="live", FunctionVersion="2"),
                      409, "ResourceConflictException")
    assert err.message == f"Alias already exists: {ARN}:{name}:live"
    err = h.api_error(client, lambda: client.create_alias(FunctionName=name, Name="other", FunctionVersion="9"),
                      404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{name}:9"
    err = h.api_error(client, lambda: client.create_alias(FunctionName="no-such-fn-al", Name="a",
                                                          FunctionVersion="1"),
                      404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:no-such-fn-al"
    assert [a["Name"] for a in client.list_aliases(FunctionName=name)["Aliases"]] == ["live"]
    # An alias may point to $LATEST when it routes to one version only.
    assert client.create_alias(FunctionName=name, Name="edge", FunctionVersion="$LATEST")["FunctionVersion"] == "$LATEST"


@pytest.mark.parametrize("alias, constraint", [
    ("12", "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"),
    ("bad.name", "Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"),
    ("a" * 129, "Member must have length less than or equal to 128"),
])
def test_alias_name_rules(client, raw_client, two_versions, alias, constraint):
    err = h.api_error(raw_client, lambda: raw_client.create_alias(FunctionName=two_versions, Name=alias,
                                                                  FunctionVersion="1"),
                      400, "ValidationException")
    assert err.message == f"1 validation error detected: Value '{alias}' at 'name' failed to satisfy constraint: {constraint}"
    assert client.list_aliases(FunctionName=two_versions)["Aliases"] == []


def test_alias_name_limits_just_under(client, two_versions):
    for alias in ("a" * 128, "1a", "A-b_9"):
        assert client.create_alias(FunctionName=two_versions, Name=alias, FunctionVersion="1")["Name"] == alias


def test_function_version_and_description_rules(client, raw_client, two_versions):
    err = h.api_error(raw_client, lambda: raw_client.create_alias(FunctionName=two_versions, Name="a",
                                                                  FunctionVersion="v1"),
                      400, "ValidationException")
    assert err.message == ("1 validation error detected: Value 'v1' at 'functionVersion' failed to satisfy "
                           "constraint: Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)")
    err = h.api_error(raw_client, lambda: raw_client.create_alias(FunctionName=two_versions, Name="a",
                                                                  FunctionVersion="1", Description="d" * 257),
                      400, "ValidationException")
    assert err.message == ("1 validation error detected: Value '" + "d" * 257 + "' at 'description' failed to "
                           "satisfy constraint: Member must have length less than or equal to 256")
    assert client.create_alias(FunctionName=two_versions, Name="a", FunctionVersion="1",
                               Description="d" * 256)["Description"] == "d" * 256


def test_update_alias_revision_and_missing(client, two_versions):
    name = two_versions
    created = client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    err = h.api_error(client, lambda: client.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                                                          RevisionId="stale"),
                      412, "PreconditionFailedException")
    assert err.message == STALE
    assert client.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    ok = client.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RevisionId=created["RevisionId"])
    assert ok["FunctionVersion"] == "2"
    err = h.api_error(client, lambda: client.update_alias(FunctionName=name, Name="live", RevisionId=created["RevisionId"]),
                      412, "PreconditionFailedException")
    err = h.api_error(client, lambda: client.update_alias(FunctionName=name, Name="nope", FunctionVersion="1"),
                      404, "ResourceNotFoundException")
    assert err.message == f"Alias not found: {ARN}:{name}:nope"
    err = h.api_error(client, lambda: client.update_alias(FunctionName=name, Name="live", FunctionVersion="7"),
                      404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{name}:7"
    assert client.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"


def test_deleting_a_missing_alias_succeeds(client, two_versions):
    """Lambda answers 204 for an alias that does not exist; the function must exist."""
    response = client.delete_alias(FunctionName=two_versions, Name="nope")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    err = h.api_error(client, lambda: client.delete_alias(FunctionName="no-such-fn-da", Name="nope"), 404,
                      "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:no-such-fn-da"


def test_list_aliases_filter_and_pages(client, raw_client, two_versions):
    name = two_versions
    for alias, version in (("a1", "1"), ("b2", "2"), ("c1", "1"), ("d2", "2"), ("e1", "1")):
        client.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)
    assert [a["Name"] for a in client.list_aliases(FunctionName=name)["Aliases"]] == ["a1", "b2", "c1", "d2", "e1"]
    assert [a["Name"] for a in client.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]] == ["a1", "c1", "e1"]
    pages = list(client.get_paginator("list_aliases").paginate(FunctionName=name, PaginationConfig={"PageSize": 2}))
    assert [len(p["Aliases"]) for p in pages] == [2, 2, 1]
    assert [a["Name"] for p in pages for a in p["Aliases"]] == ["a1", "b2", "c1", "d2", "e1"]
    err = h.api_error(raw_client, lambda: raw_client.list_aliases(FunctionName=name, MaxItems=0), 400,
                      "ValidationException")
    assert err.message == ("1 validation error detected: Value '0' at 'maxItems' failed to satisfy constraint: "
                           "Member must have value greater than or equal to 1")


# ---- routing configuration -------------------------------------------------------------------


def test_routing_config_rules(client, raw_client, two_versions):
    name = two_versions
    update_code(client, name, "three")
    client.publish_version(FunctionName=name)

    def create(version, weights, alias="w", c=client):
        return lambda: c.create_alias(FunctionName=name, Name=alias, FunctionVersion=version,
                                      RoutingConfig={"AdditionalVersionWeights": weights})

    err = h.api_error(client, create("1", {"2": 0.1, "3": 0.1}), 400, "InvalidParameterValueException")
    assert err.message == "Number of items in AdditionalVersionWeights cannot be greater than 1"
    err = h.api_error(client, create("1", {"1": 0.5}), 400, "InvalidParameterValueException")
    assert err.message == "Invalid function version 1. Function version 1 is already included in routing configuration."
    err = h.api_error(client, create("$LATEST", {"1": 0.5}), 400, "InvalidParameterValueException")
    assert err.message == "$LATEST is not supported for an alias pointing to more than 1 version"
    err = h.api_error(client, create("1", {"9": 0.5}), 404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{name}:9"
    err = h.api_error(raw_client, create("1", {"2": 1.5}, c=raw_client), 400, "ValidationException")
    assert err.message == (
        "1 validation error detected: Value '{2=1.5}' at 'routingConfig.additionalVersionWeights' failed to "
        "satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
        "Member must have value greater than or equal to 0.0, Member must not be null]")
    err = h.api_error(raw_client, create("1", {"2": -0.1}, c=raw_client), 400, "ValidationException")
    err = h.api_error(raw_client, create("1", {"$LATEST": 0.5}, c=raw_client), 400, "ValidationException")
    assert "Map keys must satisfy constraint" in err.message
    assert client.list_aliases(FunctionName=name)["Aliases"] == []
    # The edges of the weight range are accepted.
    for alias, weight in (("zero", 0.0), ("one", 1.0)):
        made = client.create_alias(FunctionName=name, Name=alias, FunctionVersion="1",
                                   RoutingConfig={"AdditionalVersionWeights": {"2": weight}})
        assert made["RoutingConfig"] == {"AdditionalVersionWeights": {"2": weight}}
    assert h.invoke_ok(client, name, Qualifier="zero").executed_version == "1"
    assert h.invoke_ok(client, name, Qualifier="one").executed_version == "2"
    # UpdateAlias applies the same rules, and an empty map removes the routing.
    err = h.api_error(client, lambda: client.update_alias(FunctionName=name, Name="zero", FunctionVersion="2"),
                      400, "InvalidParameterValueException")
    assert err.message == "Invalid function version 2. Function version 2 is already included in routing configuration."
    cleared = client.update_alias(FunctionName=name, Name="zero", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in cleared


def test_weighted_alias_routes_by_weight(client, two_versions):
    """70/30 over 300 invokes: the share of version 2 is binomial (sd 2.6%), so 30% ± 9% is a
    bound wrong less than once in 10^3 runs."""
    name = two_versions
    client.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    counts = collections.Counter()
    for _ in range(300):
        result = h.invoke_ok(client, name, Qualifier="canary", tail=False)
        # The executed version matches the code that ran.
        assert result.json()["mark"] == {"1": "one", "2": "two"}[result.executed_version]
        counts[result.executed_version] += 1
    assert set(counts) == {"1", "2"}
    assert 0.21 <= counts["2"] / 300 <= 0.39, counts


def test_weighted_alias_routes_async_invokes(server, client, two_versions):
    name = two_versions
    client.create_alias(FunctionName=name, Name="half", FunctionVersion="1",
                        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    for _ in range(30):
        assert client.invoke(FunctionName=name, Qualifier="half", InvocationType="Event")["StatusCode"] == 202
    logs = h.logs_client(server.url)

    def streams():
        try:
            found = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        names = [s["logStreamName"] for s in found]
        return names if any("[1]" in n for n in names) and any("[2]" in n for n in names) else None

    names = h.wait_until(60, streams, interval=0.2, desc="log streams of both versions")
    assert not any("[$LATEST]" in n for n in names)


# ---- addressing through an alias -------------------------------------------------------------


def test_alias_addresses_every_operation(client, two_versions):
    name = two_versions
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for form in (f"{name}:live", f"{h.ACCOUNT_ID}:function:{name}:live", f"{ARN}:{name}:live"):
        config = client.get_function_configuration(FunctionName=form)
        assert config["Version"] == "1" and config["FunctionArn"] == f"{ARN}:{name}:live"
        result = h.invoke_ok(client, form)
        assert result.executed_version == "1"
        assert result.json()["arn"] == f"{ARN}:{name}:live"
        assert result.json()["version"] == "1"
    got = client.get_function(FunctionName=name, Qualifier="live")
    assert got["Configuration"]["Version"] == "1"
    assert got["Configuration"]["FunctionArn"] == f"{ARN}:{name}:live"
    put = client.put_function_event_invoke_config(FunctionName=name, Qualifier="live", MaximumRetryAttempts=1)
    assert put["FunctionArn"] == f"{ARN}:{name}:live"
    err = h.api_error(client, lambda: client.get_function_configuration(FunctionName=f"{name}:live",
                                                                        Qualifier="1"),
                      400, "InvalidParameterValueException")
    assert err.message == "The derived qualifier from the function name does not match the specified qualifier."
    # Re-pointing the alias takes effect on the next invoke (the invoke cache is refreshed).
    client.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert h.invoke_ok(client, f"{name}:live").json()["mark"] == "two"


def test_cli_alias_commands(server, client, two_versions, tmp_path):
    name = two_versions
    made = h.aws_cli(server.url, tmp_path, "lambda", "create-alias", "--function-name", name, "--name", "prod",
                     "--function-version", "1", "--routing-config", "AdditionalVersionWeights={2=0.25}")
    assert made["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
    listed = h.aws_cli(server.url, tmp_path, "lambda", "list-aliases", "--function-name", name)
    assert [a["Name"] for a in listed["Aliases"]] == ["prod"]
    got = h.aws_cli(server.url, tmp_path, "lambda", "get-alias", "--function-name", name, "--name", "prod")
    assert got["FunctionVersion"] == "1"
    out = tmp_path / "out.json"
    result = h.aws_cli(server.url, tmp_path, "lambda", "invoke", "--function-name", f"{name}:prod", str(out))
    assert result["ExecutedVersion"] in ("1", "2")
    assert json.loads(out.read_text())["version"] == result["ExecutedVersion"]
    h.aws_cli(server.url, tmp_path, "lambda", "update-alias", "--function-name", name, "--name", "prod",
              "--routing-config", "AdditionalVersionWeights={}")
    assert "RoutingConfig" not in client.get_alias(FunctionName=name, Name="prod")
    h.aws_cli(server.url, tmp_path, "lambda", "delete-alias", "--function-name", name, "--name", "prod")
    assert client.list_aliases(FunctionName=name)["Aliases"] == []
