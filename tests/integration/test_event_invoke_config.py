"""Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s) through boto3 and the AWS CLI v1.

The AWS behaviour the `extra` tests check comes from LocalStack's AWS-recorded snapshots
(tests/aws/services/lambda_/test_lambda_api.snapshot.json, TestLambdaEventInvokeConfig)."""

from __future__ import annotations

import datetime

import pytest

import kappa_async as ka
import kappa_helpers as h

SQS_ARN = "arn:aws:sqs:us-east-1:000000000000:q"


@pytest.fixture(scope="module")
def dest_fn(client):
    name = h.new_name("eic-dest")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    return name


@pytest.fixture(scope="module")
def dest_fn2(client):
    name = h.new_name("eic-dest2")
    h.create_custom_function(client, name, h.shell_bootstrap(ka.DESTINATION_HANDLER))
    return name


@pytest.fixture
def fn(client, fn_name):
    h.create_custom_function(client, fn_name, h.shell_bootstrap())
    return fn_name


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory):
    return tmp_path_factory.mktemp("aws-cli-home")


def config_of(resp: dict) -> dict:
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def check_last_modified(config: dict) -> None:
    lm = config.get("LastModified")
    assert isinstance(lm, datetime.datetime), config
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - lm).total_seconds()) < 300, f"LastModified {lm} is not about now ({now})"


def destination(config: dict, which: str):
    return (config.get("DestinationConfig") or {}).get(which, {}).get("Destination")


# ---- put / get / update / delete / list -------------------------------------------------------


def test_put_then_get(client, fn, dest_fn):
    resp = client.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    put = config_of(resp)
    assert put["FunctionArn"] == ka.function_arn(fn, "$LATEST"), put
    assert put["FunctionArn"].endswith(":$LATEST")
    assert put["MaximumRetryAttempts"] == 1 and put["MaximumEventAgeInSeconds"] == 3600, put
    assert destination(put, "OnFailure") == ka.function_arn(dest_fn), put
    assert destination(put, "OnSuccess") is None, put
    check_last_modified(put)

    got = config_of(client.get_function_event_invoke_config(FunctionName=fn))
    assert got == put, (got, put)
    assert config_of(client.get_function_event_invoke_config(FunctionName=fn, Qualifier="$LATEST")) == put
    assert config_of(client.get_function_event_invoke_config(FunctionName=ka.function_arn(fn))) == put


def test_put_with_explicit_latest_qualifier_is_the_same_config(client, fn):
    client.put_function_event_invoke_config(FunctionName=fn, Qualifier="$LATEST", MaximumRetryAttempts=0)
    got = config_of(client.get_function_event_invoke_config(FunctionName=fn))
    assert got["FunctionArn"] == ka.function_arn(fn, "$LATEST")
    assert got["MaximumRetryAttempts"] == 0


def test_update_changes_only_the_given_fields(client, fn, dest_fn, dest_fn2):
    client.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})

    upd = config_of(client.update_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0))
    assert upd["MaximumRetryAttempts"] == 0, upd
    assert upd["MaximumEventAgeInSeconds"] == 3600, upd
    assert destination(upd, "OnFailure") == ka.function_arn(dest_fn), upd
    assert upd["FunctionArn"] == ka.function_arn(fn, "$LATEST")
    assert config_of(client.get_function_event_invoke_config(FunctionName=fn)) == upd

    upd = config_of(client.update_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=120))
    assert (upd["MaximumRetryAttempts"], upd["MaximumEventAgeInSeconds"]) == (0, 120), upd
    assert destination(upd, "OnFailure") == ka.function_arn(dest_fn), upd

    upd = config_of(client.update_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": ka.function_arn(dest_fn2)}}))
    assert (upd["MaximumRetryAttempts"], upd["MaximumEventAgeInSeconds"]) == (0, 120), upd
    assert destination(upd, "OnSuccess") == ka.function_arn(dest_fn2), upd
    assert config_of(client.get_function_event_invoke_config(FunctionName=fn)) == upd


def test_delete_then_get_is_404(client, fn):
    client.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=2)
    resp = client.delete_function_event_invoke_config(FunctionName=fn)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204, resp
    err = h.api_error(client, lambda: client.get_function_event_invoke_config(FunctionName=fn),
                      404, "ResourceNotFoundException")
    assert fn in err.message, err
    assert client.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"] == []
    h.api_error(client, lambda: client.delete_function_event_invoke_config(FunctionName=fn),
                404, "ResourceNotFoundException")


def test_get_without_config_is_404(client, fn):
    h.api_error(client, lambda: client.get_function_event_invoke_config(FunctionName=fn),
                404, "ResourceNotFoundException")


def test_list(client, fn):
    assert client.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"] == []
    put = config_of(client.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=600))
    listed = client.list_function_event_invoke_configs(FunctionName=fn)
    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert listed["FunctionEventInvokeConfigs"] == [put], listed
    assert "NextMarker" not in listed, listed
    assert listed["FunctionEventInvokeConfigs"][0]["FunctionArn"].endswith(":$LATEST")
    pages = list(client.get_paginator("list_function_event_invoke_configs").paginate(FunctionName=fn))
    assert [c for p in pages for c in p["FunctionEventInvokeConfigs"]] == [put]


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 2])
def test_retry_attempts_in_range_accepted(raw_client, fn, value):
    resp = raw_client.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=value)
    assert resp["MaximumRetryAttempts"] == value
    resp = raw_client.update_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=value)
    assert resp["MaximumRetryAttempts"] == value


@pytest.mark.parametrize("value", [-1, 3, 100])
def test_retry_attempts_out_of_range_is_validation_error(raw_client, fn, value):
    raw_client.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=300)
    before = config_of(raw_client.get_function_event_invoke_config(FunctionName=fn))
    for call in (raw_client.put_function_event_invoke_config, raw_client.update_function_event_invoke_config):
        err = h.api_error(raw_client, lambda: call(FunctionName=fn, MaximumRetryAttempts=value),
                          400, "ValidationException")
        assert "maximumRetryAttempts" in err.message and f"'{value}'" in err.message, err
    assert config_of(raw_client.get_function_event_invoke_config(FunctionName=fn)) == before, \
        "a rejected call must not change the config"


@pytest.mark.parametrize("value", [60, 21600])
def test_event_age_in_range_accepted(raw_client, fn, value):
    resp = raw_client.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=value)
    assert resp["MaximumEventAgeInSeconds"] == value
    resp = raw_client.update_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=value)
    assert resp["MaximumEventAgeInSeconds"] == value


@pytest.mark.parametrize("value", [59, 21601, 0, -5])
def test_event_age_out_of_range_is_validation_error(raw_client, fn, value):
    raw_client.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=300)
    before = config_of(raw_client.get_function_event_invoke_config(FunctionName=fn))
    for call in (raw_client.put_function_event_invoke_config, raw_client.update_function_event_invoke_config):
        err = h.api_error(raw_client, lambda: call(FunctionName=fn, MaximumEventAgeInSeconds=value),
                          400, "ValidationException")
        assert "maximumEventAgeInSeconds" in err.message and f"'{value}'" in err.message, err
    assert config_of(raw_client.get_function_event_invoke_config(FunctionName=fn)) == before


@pytest.mark.parametrize("which", ["OnFailure", "OnSuccess"])
def test_non_lambda_destination_is_invalid_parameter(raw_client, fn, which):
    for call in (raw_client.put_function_event_invoke_config, raw_client.update_function_event_invoke_config):
        h.api_error(raw_client, lambda: call(FunctionName=fn, DestinationConfig={which: {"Destination": SQS_ARN}}),
                    400, "InvalidParameterValueException")
    h.api_error(raw_client, lambda: raw_client.get_function_event_invoke_config(FunctionName=fn),
                404, "ResourceNotFoundException")


@pytest.mark.parametrize("operation", ["put", "get", "update", "delete", "list"])
def test_unknown_function_is_404(raw_client, operation):
    name = h.new_name("eic-nope")
    calls = {
        "put": lambda: raw_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1),
        "get": lambda: raw_client.get_function_event_invoke_config(FunctionName=name),
        "update": lambda: raw_client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1),
        "delete": lambda: raw_client.delete_function_event_invoke_config(FunctionName=name),
        "list": lambda: raw_client.list_function_event_invoke_configs(FunctionName=name),
    }
    h.api_error(raw_client, calls[operation], 404, "ResourceNotFoundException")


# ---- AWS CLI v1 ----------------------------------------------------------------------------------


def test_cli_lifecycle(server, client, fn, dest_fn, cli_home):
    def cli(*args, check=True):
        return h.aws_cli(server.url, cli_home, "lambda", *args, check=check)

    put = cli("put-function-event-invoke-config", "--function-name", fn, "--maximum-retry-attempts", "0",
              "--destination-config", f'{{"OnFailure":{{"Destination":"{ka.function_arn(dest_fn)}"}}}}')
    assert put["FunctionArn"] == ka.function_arn(fn, "$LATEST"), put
    assert put["MaximumRetryAttempts"] == 0
    assert put["DestinationConfig"]["OnFailure"]["Destination"] == ka.function_arn(dest_fn)

    got = cli("get-function-event-invoke-config", "--function-name", fn)
    assert got == put, (got, put)

    upd = cli("update-function-event-invoke-config", "--function-name", fn, "--maximum-event-age-in-seconds", "900")
    assert upd["MaximumRetryAttempts"] == 0 and upd["MaximumEventAgeInSeconds"] == 900, upd
    assert upd["DestinationConfig"]["OnFailure"]["Destination"] == ka.function_arn(dest_fn)

    listed = cli("list-function-event-invoke-configs", "--function-name", fn)
    assert listed["FunctionEventInvokeConfigs"] == [upd], listed

    bad = cli("put-function-event-invoke-config", "--function-name", fn, "--maximum-retry-attempts", "3", check=False)
    assert bad.returncode != 0 and "ValidationException" in bad.stderr, bad

    assert cli("delete-function-event-invoke-config", "--function-name", fn) is None
    gone = cli("get-function-event-invoke-config", "--function-name", fn, check=False)
    assert gone.returncode != 0 and "ResourceNotFoundException" in gone.stderr, gone


# ---- beyond the written contract (AWS behaviour recorded by LocalStack) --------------------------


@pytest.mark.extra
def test_put_replaces_the_whole_config(client, fn, dest_fn):
    client.put_function_event_invoke_config(
        FunctionName=fn, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": ka.function_arn(dest_fn)}})
    put = config_of(client.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0))
    got = config_of(client.get_function_event_invoke_config(FunctionName=fn))
    for config in (put, got):
        assert config["MaximumRetryAttempts"] == 0, config
        # (That Kappa fills in the default 21600 is checked by the next test.)
        assert config.get("MaximumEventAgeInSeconds") != 60, f"Put must not keep the old age: {config}"
        assert destination(config, "OnFailure") is None, f"Put must drop the old destination: {config}"


@pytest.mark.extra
def test_unset_fields_are_left_out_and_destinations_are_empty_objects(client, fn):
    """AWS: put MaximumRetryAttempts=0 alone answers {DestinationConfig: {OnFailure: {}, OnSuccess: {}},
    FunctionArn, LastModified, MaximumRetryAttempts: 0} with no MaximumEventAgeInSeconds."""
    put = config_of(client.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0))
    assert set(put) == {"DestinationConfig", "FunctionArn", "LastModified", "MaximumRetryAttempts"}, put
    assert put["DestinationConfig"] == {"OnFailure": {}, "OnSuccess": {}}, put
    put = config_of(client.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=60))
    assert "MaximumRetryAttempts" not in put, put


@pytest.mark.extra
def test_update_without_existing_config_is_404(client, fn):
    err = h.api_error(client, lambda: client.update_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=0),
                      404, "ResourceNotFoundException")
    assert err.message == f"The function {ka.function_arn(fn, '$LATEST')} doesn't have an EventInvokeConfig", err
    h.api_error(client, lambda: client.get_function_event_invoke_config(FunctionName=fn),
                404, "ResourceNotFoundException")


@pytest.mark.extra
def test_missing_config_message(client, fn):
    err = h.api_error(client, lambda: client.get_function_event_invoke_config(FunctionName=fn),
                      404, "ResourceNotFoundException")
    assert err.message == f"The function {ka.function_arn(fn, '$LATEST')} doesn't have an EventInvokeConfig", err


@pytest.mark.extra
def test_put_without_any_setting_is_rejected(raw_client, fn):
    err = h.api_error(raw_client, lambda: raw_client.put_function_event_invoke_config(FunctionName=fn),
                      400, "InvalidParameterValueException")
    assert err.message == "You must specify at least one of error handling or destination setting.", err


@pytest.mark.extra
def test_function_as_its_own_destination_is_rejected(raw_client, fn):
    err = h.api_error(raw_client, lambda: raw_client.put_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": ka.function_arn(fn)}}),
        400, "InvalidParameterValueException")
    assert err.message == "You can't specify the function as a destination for itself.", err


@pytest.mark.extra
def test_destination_function_must_exist(raw_client, fn):
    missing = ka.function_arn(h.new_name("eic-missing"))
    err = h.api_error(raw_client, lambda: raw_client.put_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": missing}}),
        400, "InvalidParameterValueException")
    assert err.message == f"The destination ARN {missing} is invalid.", err


@pytest.mark.extra
def test_deleting_the_function_deletes_its_config(client, fn_name):
    h.create_custom_function(client, fn_name, h.shell_bootstrap())
    client.put_function_event_invoke_config(FunctionName=fn_name, MaximumRetryAttempts=0)
    client.delete_function(FunctionName=fn_name)
    h.create_custom_function(client, fn_name, h.shell_bootstrap())
    h.api_error(client, lambda: client.get_function_event_invoke_config(FunctionName=fn_name),
                404, "ResourceNotFoundException")
