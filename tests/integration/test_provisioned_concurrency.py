"""Provisioned concurrency: Put/Get/List/DeleteProvisionedConcurrencyConfig on versions and
aliases, environments initialized ahead of invokes (no Init Duration, init type
`provisioned-concurrency`), spill-over to on-demand environments, retirement, failures and
restarts."""

from __future__ import annotations

import concurrent.futures
import re
import time

import pytest

import kappa_async
import kappa_helpers as h
from test_versions import ARN

PY_APP = '''\
import os
import time

if os.environ.get("FAIL_INIT") == "yes":
    raise RuntimeError("init refuses")


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "stream": context.log_stream_name,
        "version": context.function_version,
    }
'''

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$")


def make_versioned(client, name: str, **overrides) -> None:
    params = {"Runtime": "python3.12", "Handler": "app.handler", "Timeout": 20}
    params.update(overrides)
    h.create_function(client, name, h.zip_package({"app.py": PY_APP}, executables=()), **params)
    client.publish_version(FunctionName=name)


def wait_status(client, name: str, qualifier: str, status: str, timeout: float = 30) -> dict:
    def check():
        got = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        return got if got["Status"] == status else None

    return h.wait_until(timeout, check, interval=0.1, desc=f"{name}:{qualifier} {status}")


def test_provisioned_version_serves_without_a_cold_start(client, fn_name):
    make_versioned(client, fn_name)
    put = h.strip_meta(client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=2))
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    # Put answers before anything is allocated.
    assert put["Status"] == "IN_PROGRESS"
    assert put["AllocatedProvisionedConcurrentExecutions"] == 0
    assert put["AvailableProvisionedConcurrentExecutions"] == 0
    assert ISO.match(put["LastModified"]), put
    ready = wait_status(client, fn_name, "1", "READY")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2
    assert ready["LastModified"] == put["LastModified"]
    first = h.invoke_ok(client, fn_name, Qualifier="1")
    assert not first.cold, first.log
    assert first.json()["init_type"] == "provisioned-concurrency"
    assert first.executed_version == "1"
    # $LATEST is not provisioned: its first invoke is a cold, on-demand start.
    latest = h.invoke_ok(client, fn_name)
    assert latest.cold and latest.json()["init_type"] == "on-demand"


def test_invokes_beyond_the_provisioned_environments_spill_over(client, fn_name):
    make_versioned(client, fn_name)
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    wait_status(client, fn_name, "1", "READY")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: h.invoke_ok(client, fn_name, {"sleep": 1.5}, Qualifier="1"), range(2)))
    kinds = sorted((r.json()["init_type"], r.cold) for r in results)
    assert kinds == [("on-demand", True), ("provisioned-concurrency", False)], [r.log for r in results]


def test_provisioned_alias(client, fn_name):
    make_versioned(client, fn_name)
    client.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    wait_status(client, fn_name, "live", "READY")
    result = h.invoke_ok(client, f"{fn_name}:live")
    assert not result.cold and result.json()["init_type"] == "provisioned-concurrency"
    listed = client.list_provisioned_concurrency_configs(FunctionName=fn_name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ARN}:{fn_name}:live"]
    assert listed[0]["Status"] == "READY" and listed[0]["RequestedProvisionedConcurrentExecutions"] == 1
    # Deleting the alias deletes its config.
    client.delete_alias(FunctionName=fn_name, Name="live")
    assert client.list_provisioned_concurrency_configs(FunctionName=fn_name)["ProvisionedConcurrencyConfigs"] == []


def test_deleting_the_config_retires_the_environments(server_factory, fn_name):
    srv = server_factory()
    client = srv.client()
    make_versioned(client, fn_name)
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=2)
    wait_status(client, fn_name, "1", "READY")
    assert kappa_async.metrics(srv)["kappa_idle_environments"] == 2
    client.delete_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1")
    err = h.api_error(client, lambda: client.get_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1"),
                      404, "ProvisionedConcurrencyConfigNotFoundException")
    assert err.message == "No Provisioned Concurrency Config found for this function"
    h.wait_until(10, lambda: kappa_async.metrics(srv)["kappa_idle_environments"] == 0,
                 desc="the provisioned environments to be retired")
    after = h.invoke_ok(client, fn_name, Qualifier="1")
    assert after.cold and after.json()["init_type"] == "on-demand"


def test_reducing_the_config_retires_the_extra_environments(server_factory, fn_name):
    srv = server_factory()
    client = srv.client()
    make_versioned(client, fn_name)
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=3)
    wait_status(client, fn_name, "1", "READY")
    assert kappa_async.metrics(srv)["kappa_idle_environments"] == 3
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    ready = wait_status(client, fn_name, "1", "READY")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 1
    h.wait_until(10, lambda: kappa_async.metrics(srv)["kappa_idle_environments"] == 1,
                 desc="two provisioned environments to be retired")


def test_provisioned_environments_are_kept_warm(server_factory, fn_name):
    srv = server_factory(env={"KAPPA_KEEP_ALIVE_SECS": "1"})
    client = srv.client()
    make_versioned(client, fn_name)
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    wait_status(client, fn_name, "1", "READY")
    first = h.invoke_ok(client, fn_name, Qualifier="1")
    # An on-demand environment idle for longer than the keep-alive is reaped...
    h.invoke_ok(client, fn_name)
    time.sleep(3)
    assert h.invoke_ok(client, fn_name).cold
    # ...a provisioned one is not.
    again = h.invoke_ok(client, fn_name, Qualifier="1")
    assert not again.cold and again.json()["stream"] == first.json()["stream"]


def test_init_failure_marks_the_config_failed(client, fn_name):
    make_versioned(client, fn_name, Environment={"Variables": {"FAIL_INIT": "yes"}})
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    failed = wait_status(client, fn_name, "1", "FAILED")
    assert failed["AllocatedProvisionedConcurrentExecutions"] == 0
    assert failed["StatusReason"] == "FUNCTION_ERROR_INIT_FAILURE"


def test_configs_survive_a_restart_and_are_provisioned_again(server_factory, fn_name):
    srv = server_factory()
    client = srv.client()
    make_versioned(client, fn_name)
    put = client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1",
                                                    ProvisionedConcurrentExecutions=1)
    wait_status(client, fn_name, "1", "READY")
    srv.stop()
    srv.start()
    client = srv.client()
    ready = wait_status(client, fn_name, "1", "READY")
    assert ready["LastModified"] == put["LastModified"]
    result = h.invoke_ok(client, fn_name, Qualifier="1")
    assert not result.cold and result.json()["init_type"] == "provisioned-concurrency"


# ---- errors ----------------------------------------------------------------------------------


def test_latest_cannot_be_provisioned(client, fn_name):
    make_versioned(client, fn_name)
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1), 400,
        "InvalidParameterValueException")
    assert err.message == "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    client.create_alias(FunctionName=fn_name, Name="edge", FunctionVersion="$LATEST")
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="edge", ProvisionedConcurrentExecutions=1), 400,
        "InvalidParameterValueException")
    assert err.message == "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
    for call in (lambda: client.get_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="$LATEST"),
                 lambda: client.delete_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="$LATEST")):
        err = h.api_error(client, call, 400, "InvalidParameterValueException")
        assert err.message == "The function resource provided must be an alias or a published version."
    assert client.list_provisioned_concurrency_configs(FunctionName=fn_name)["ProvisionedConcurrencyConfigs"] == []


def test_provisioned_concurrency_value_limits(client, raw_client, fn_name):
    make_versioned(client, fn_name)
    err = h.api_error(raw_client, lambda: raw_client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=0), 400, "ValidationException")
    assert err.message == ("1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to "
                           "satisfy constraint: Member must have value greater than or equal to 1")
    ok = client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1",
                                                   ProvisionedConcurrentExecutions=1)
    assert ok["RequestedProvisionedConcurrentExecutions"] == 1


def test_provisioned_concurrency_comes_out_of_unreserved_concurrency(server_factory, fn_name):
    """With an account limit of 104, at most 4 can be provisioned: 100 always stay unreserved."""
    srv = server_factory(env={"KAPPA_CONCURRENCY_LIMIT": "104"})
    client = srv.client()
    make_versioned(client, fn_name)
    client.update_function_configuration(FunctionName=fn_name, Description="second")
    client.publish_version(FunctionName=fn_name)
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 104
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=105), 400,
        "InvalidParameterValueException")
    assert err.message == "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [104]."
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=3)
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 101
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="2", ProvisionedConcurrentExecutions=2), 400,
        "InvalidParameterValueException")
    assert err.message == ("Specified ConcurrentExecutions for function decreases account's "
                           "UnreservedConcurrentExecution below its minimum value of [100].")
    # Just at the minimum is accepted; changing a config replaces its own share.
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="2", ProvisionedConcurrentExecutions=1)
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=2)
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 101
    client.delete_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="2")
    assert client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 102


def test_a_version_is_provisioned_directly_or_through_aliases(client, fn_name):
    make_versioned(client, fn_name)
    client.create_alias(FunctionName=fn_name, Name="live", FunctionVersion="1")
    client.create_alias(FunctionName=fn_name, Name="other", FunctionVersion="1")
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1), 409, "ResourceConflictException")
    assert err.message == "Version is pointed by a Provisioned Concurrency alias"
    client.delete_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="live")
    client.put_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="other", ProvisionedConcurrentExecutions=1), 409, "ResourceConflictException")
    assert err.message == "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
    listed = client.list_provisioned_concurrency_configs(FunctionName=fn_name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ARN}:{fn_name}:1"]


def test_missing_targets(client, fn_name):
    make_versioned(client, fn_name)
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier="7", ProvisionedConcurrentExecutions=1), 404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:{fn_name}:7"
    err = h.api_error(client, lambda: client.put_provisioned_concurrency_config(
        FunctionName="no-such-fn-pc", Qualifier="1", ProvisionedConcurrentExecutions=1), 404,
        "ResourceNotFoundException")
    assert err.message == f"Function not found: {ARN}:no-such-fn-pc"
    err = h.api_error(client, lambda: client.get_provisioned_concurrency_config(FunctionName=fn_name, Qualifier="1"),
                      404, "ProvisionedConcurrencyConfigNotFoundException")
    assert err.message == "No Provisioned Concurrency Config found for this function"


def test_cli_provisioned_concurrency(server, client, fn_name, tmp_path):
    make_versioned(client, fn_name)
    put = h.aws_cli(server.url, tmp_path, "lambda", "put-provisioned-concurrency-config", "--function-name", fn_name,
                    "--qualifier", "1", "--provisioned-concurrent-executions", "1")
    assert put["RequestedProvisionedConcurrentExecutions"] == 1
    wait_status(client, fn_name, "1", "READY")
    listed = h.aws_cli(server.url, tmp_path, "lambda", "list-provisioned-concurrency-configs",
                       "--function-name", fn_name)
    assert [c["FunctionArn"] for c in listed["ProvisionedConcurrencyConfigs"]] == [f"{ARN}:{fn_name}:1"]
    got = h.aws_cli(server.url, tmp_path, "lambda", "get-provisioned-concurrency-config", "--function-name", fn_name,
                    "--qualifier", "1")
    assert got["Status"] == "READY"
    h.aws_cli(server.url, tmp_path, "lambda", "delete-provisioned-concurrency-config", "--function-name", fn_name,
              "--qualifier", "1")
    assert client.list_provisioned_concurrency_configs(FunctionName=fn_name)["ProvisionedConcurrencyConfigs"] == []
