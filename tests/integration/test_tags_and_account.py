"""TagResource / UntagResource / ListTags, and GetAccountSettings."""

from __future__ import annotations

import pytest

import kappa_helpers as h


def test_tags_from_create_are_listed(client, fn_name):
    created = h.create_function(client, fn_name, Tags={"env": "test", "owner": "kappa"})
    resp = client.list_tags(Resource=created["FunctionArn"])
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Tags"] == {"env": "test", "owner": "kappa"}
    assert client.get_function(FunctionName=fn_name)["Tags"] == {"env": "test", "owner": "kappa"}


def test_tag_untag_list(client, fn_name):
    arn = h.create_function(client, fn_name, Tags={"a": "1"})["FunctionArn"]
    resp = client.tag_resource(Resource=arn, Tags={"b": "2", "c": "3", "a": "one"})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert client.list_tags(Resource=arn)["Tags"] == {"a": "one", "b": "2", "c": "3"}
    resp = client.untag_resource(Resource=arn, TagKeys=["a", "c"])
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert client.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    assert client.get_function(FunctionName=fn_name)["Tags"] == {"b": "2"}
    # Removing a key that is not there is not an error.
    client.untag_resource(Resource=arn, TagKeys=["nope"])
    assert client.list_tags(Resource=arn)["Tags"] == {"b": "2"}


def test_tagging_does_not_change_function(client, fn_name):
    created = h.create_function(client, fn_name)
    client.tag_resource(Resource=created["FunctionArn"], Tags={"x": "y"})
    cfg = client.get_function_configuration(FunctionName=fn_name)
    assert cfg["CodeSha256"] == created["CodeSha256"]


def test_tags_of_unknown_function_not_found(server, client):
    arn = server.function_arn(h.new_name("ghost"))
    h.api_error(client, lambda: client.list_tags(Resource=arn), 404, "ResourceNotFoundException")
    h.api_error(client, lambda: client.tag_resource(Resource=arn, Tags={"a": "b"}), 404, "ResourceNotFoundException")
    h.api_error(client, lambda: client.untag_resource(Resource=arn, TagKeys=["a"]), 404, "ResourceNotFoundException")


@pytest.mark.extra
def test_tags_removed_with_function(client, fn_name):
    arn = h.create_function(client, fn_name, Tags={"k": "v"})["FunctionArn"]
    client.delete_function(FunctionName=fn_name)
    h.api_error(client, lambda: client.list_tags(Resource=arn), 404, "ResourceNotFoundException")
    h.create_function(client, fn_name)
    assert client.list_tags(Resource=arn)["Tags"] == {}


def test_account_settings_limits(client):
    resp = client.get_account_settings()
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    limit = resp["AccountLimit"]
    assert limit["CodeSizeUnzipped"] == 262144000
    assert limit["CodeSizeZipped"] == 52428800
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["UnreservedConcurrentExecutions"] == 1000
    assert isinstance(limit["TotalCodeSize"], int) and limit["TotalCodeSize"] > 0
    usage = resp["AccountUsage"]
    assert isinstance(usage["FunctionCount"], int)
    assert isinstance(usage["TotalCodeSize"], int)


def test_account_usage_reflects_functions(server_factory):
    srv = server_factory()
    client = srv.client()
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"TotalCodeSize": 0, "FunctionCount": 0}
    sizes = []
    for i in range(3):
        sizes.append(h.create_function(client, f"acct-{i}", h.unique_zip())["CodeSize"])
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"TotalCodeSize": sum(sizes), "FunctionCount": 3}


@pytest.mark.extra
def test_account_usage_follows_updates_and_deletes(server_factory):
    srv = server_factory()
    client = srv.client()
    sizes = [h.create_function(client, f"acct-{i}", h.unique_zip())["CodeSize"] for i in range(3)]
    bigger = h.build_zip({"app.py": h.HANDLER_SOURCE, "pad.txt": b"x" * 5000}, compression=0)
    client.update_function_code(FunctionName="acct-0", ZipFile=bigger)
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"TotalCodeSize": len(bigger) + sizes[1] + sizes[2], "FunctionCount": 3}
    client.delete_function(FunctionName="acct-1")
    usage = client.get_account_settings()["AccountUsage"]
    assert usage == {"TotalCodeSize": len(bigger) + sizes[2], "FunctionCount": 2}
