"""Parameter limits for CreateFunction / UpdateFunctionConfiguration: each limit is tested
just under (accepted) and just over (rejected, leaving nothing behind).

Uses a boto3 client without client-side validation so invalid values reach the server."""

from __future__ import annotations

import json
import uuid

import pytest

import kappa_helpers as h


def exact_name(length: int) -> str:
    suffix = uuid.uuid4().hex[:8]
    return "n" * (length - len(suffix) - 1) + "-" + suffix


def env_of_json_size(size: int) -> dict[str, str]:
    """Environment variables whose compact JSON encoding is exactly `size` bytes."""
    variables = {"FIRST_VAR": "one", "SECOND_VAR": "two", "PADDING": ""}
    base = len(json.dumps(variables, separators=(",", ":")).encode())
    variables["PADDING"] = "p" * (size - base)
    assert len(json.dumps(variables, separators=(",", ":")).encode()) == size
    return variables


# ---- accepted at the limit ------------------------------------------------------------------

ACCEPTED = {
    "name-64": lambda: {"FunctionName": exact_name(64)},
    "handler-128": lambda: {"Handler": "h" * (128 - len(".handler")) + ".handler"},
    "memory-128": lambda: {"MemorySize": 128},
    "memory-10240": lambda: {"MemorySize": 10240},
    "timeout-1": lambda: {"Timeout": 1},
    "timeout-900": lambda: {"Timeout": 900},
    "ephemeral-512": lambda: {"EphemeralStorage": {"Size": 512}},
    "ephemeral-10240": lambda: {"EphemeralStorage": {"Size": 10240}},
    "description-256": lambda: {"Description": "d" * 256},
    "env-4096": lambda: {"Environment": {"Variables": env_of_json_size(4096)}},
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_create_accepts_value_at_limit(raw_client, case):
    overrides = ACCEPTED[case]()
    name = overrides.pop("FunctionName", h.new_name("ok-" + case))
    cfg = h.create_function(raw_client, name, **overrides)
    assert cfg["FunctionName"] == name
    for key, value in overrides.items():
        assert cfg[key] == value, key
    got = raw_client.get_function_configuration(FunctionName=name)
    for key, value in overrides.items():
        assert got[key] == value, key


# ---- rejected just over the limit -----------------------------------------------------------

# case id -> (overrides, error code, substrings the message must contain, name is valid?)
REJECTED = {
    "name-65": (lambda: {"FunctionName": exact_name(65)}, "ValidationException",
                ["Member must have length less than or equal to 64"], False),
    "name-bad-chars": (lambda: {"FunctionName": "bad name!"}, "ValidationException", [], False),
    "handler-129": (lambda: {"Handler": "h" * (129 - len(".handler")) + ".handler"}, "ValidationException",
                    ["Member must have length less than or equal to 128"], True),
    "handler-space": (lambda: {"Handler": "app handler"}, "ValidationException", [], True),
    "handler-tab": (lambda: {"Handler": "app.\thandler"}, "ValidationException", [], True),
    "memory-127": (lambda: {"MemorySize": 127}, "ValidationException",
                   ["Member must have value greater than or equal to 128"], True),
    "memory-10241": (lambda: {"MemorySize": 10241}, "ValidationException",
                     ["Member must have value less than or equal to 10240"], True),
    "timeout-0": (lambda: {"Timeout": 0}, "ValidationException",
                  ["Member must have value greater than or equal to 1"], True),
    "timeout-901": (lambda: {"Timeout": 901}, "ValidationException",
                    ["Member must have value less than or equal to 900"], True),
    "ephemeral-511": (lambda: {"EphemeralStorage": {"Size": 511}}, "ValidationException",
                      ["Member must have value greater than or equal to 512"], True),
    "ephemeral-10241": (lambda: {"EphemeralStorage": {"Size": 10241}}, "ValidationException",
                        ["Member must have value less than or equal to 10240"], True),
    "description-257": (lambda: {"Description": "d" * 257}, "ValidationException",
                        ["Member must have length less than or equal to 256"], True),
    "env-4097": (lambda: {"Environment": {"Variables": env_of_json_size(4097)}}, "InvalidParameterValueException",
                 [h.ENV_TOO_LARGE_PREFIX], True),
}

RESERVED_KEYS = ["AWS_REGION", "AWS_ACCESS_KEY_ID", "_HANDLER", "AWS_LAMBDA_FUNCTION_NAME"] + [
    pytest.param(key, marks=pytest.mark.extra)
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT",
                "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_RUNTIME_API", "AWS_DEFAULT_REGION")
]


@pytest.mark.parametrize("case", list(REJECTED))
def test_create_rejects_value_over_limit(server, raw_client, case):
    make, code, fragments, name_is_valid = REJECTED[case]
    overrides = make()
    name = overrides.pop("FunctionName", h.new_name("bad-" + case))
    err = h.assert_create_rejected(server, raw_client, h.create_params(name, **overrides), 400, code,
                                   check_get=name_is_valid)
    for fragment in fragments:
        assert fragment in err.message, f"{fragment!r} not in {err.message!r}"
    if case == "env-4097":
        assert err.message.startswith(h.ENV_TOO_LARGE_PREFIX), err.message


@pytest.mark.parametrize("key", RESERVED_KEYS)
def test_create_rejects_reserved_environment_keys(server, raw_client, key):
    name = h.new_name("reserved")
    params = h.create_params(name, Environment={"Variables": {"OK_VAR": "1", key: "x"}})
    err = h.assert_create_rejected(server, raw_client, params, 400, "InvalidParameterValueException")
    assert "reserved keys" in err.message, err.message
    assert key in err.message, err.message


def test_ordinary_environment_variables_accepted(raw_client, fn_name):
    # TZ is one of the few Lambda-set names a function may override (runtime-interface.md §2.1).
    variables = {"AWS_LIKE_BUT_NOT_RESERVED": "1", "MY_TZ": "x", "lower_case": "y", "TZ": "Europe/Paris"}
    cfg = h.create_function(raw_client, fn_name, Environment={"Variables": variables})
    assert cfg["Environment"]["Variables"] == variables


# ---- the same limits through UpdateFunctionConfiguration ------------------------------------

UPDATE_REJECTED = {
    "memory-127": ({"MemorySize": 127}, "ValidationException", "greater than or equal to 128"),
    "memory-10241": ({"MemorySize": 10241}, "ValidationException", "less than or equal to 10240"),
    "timeout-0": ({"Timeout": 0}, "ValidationException", "greater than or equal to 1"),
    "timeout-901": ({"Timeout": 901}, "ValidationException", "less than or equal to 900"),
    "ephemeral-10241": ({"EphemeralStorage": {"Size": 10241}}, "ValidationException", "less than or equal to 10240"),
    "description-257": ({"Description": "d" * 257}, "ValidationException", "less than or equal to 256"),
    "handler-space": ({"Handler": "a b"}, "ValidationException", ""),
    "env-4097": ({"Environment": {"Variables": env_of_json_size(4097)}}, "InvalidParameterValueException",
                 h.ENV_TOO_LARGE_PREFIX),
    "env-reserved": ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "InvalidParameterValueException",
                     "reserved keys"),
}


@pytest.fixture(scope="module")
def update_target(raw_client):
    name = h.new_name("update-target")
    h.create_function(raw_client, name)
    return name


@pytest.mark.parametrize("case", list(UPDATE_REJECTED))
def test_update_configuration_rejects_value_over_limit(raw_client, update_target, case):
    overrides, code, fragment = UPDATE_REJECTED[case]
    before = raw_client.get_function_configuration(FunctionName=update_target)
    err = h.api_error(
        raw_client,
        lambda: raw_client.update_function_configuration(FunctionName=update_target, **overrides),
        400,
        code,
    )
    assert fragment in err.message, err.message
    after = raw_client.get_function_configuration(FunctionName=update_target)
    assert h.strip_meta(after) == h.strip_meta(before), "a rejected update changed the function"


@pytest.mark.parametrize(
    "overrides",
    [
        {"MemorySize": 10240},
        {"Timeout": 900},
        {"EphemeralStorage": {"Size": 10240}},
        {"Description": "d" * 256},
        {"Environment": {"Variables": env_of_json_size(4096)}},
    ],
    ids=["memory-10240", "timeout-900", "ephemeral-10240", "description-256", "env-4096"],
)
def test_update_configuration_accepts_value_at_limit(raw_client, update_target, overrides):
    resp = raw_client.update_function_configuration(FunctionName=update_target, **overrides)
    for key, value in overrides.items():
        assert resp[key] == value
