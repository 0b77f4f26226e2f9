"""Function CRUD: CreateFunction, GetFunction(Configuration), UpdateFunctionCode/Configuration,
DeleteFunction, RevisionId preconditions, name forms, waiters."""

from __future__ import annotations

import threading
import urllib.parse

import pytest

import kappa_helpers as h


def test_create_returns_full_configuration(server, client, fn_name):
    zip_bytes = h.unique_zip()
    resp = client.create_function(**h.create_params(fn_name, zip_bytes, Description="hello"))
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    cfg = h.strip_meta(resp)
    assert cfg["FunctionName"] == fn_name
    assert cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fn_name}"
    assert cfg["Runtime"] == "python3.12"
    assert cfg["Role"] == h.ROLE
    assert cfg["Handler"] == "app.handler"
    assert cfg["Description"] == "hello"
    assert cfg["State"] == "Active"
    assert cfg["LastUpdateStatus"] == "Successful"
    assert cfg["Version"] == "$LATEST"
    assert cfg["PackageType"] == "Zip"
    assert cfg["CodeSha256"] == h.code_sha256(zip_bytes)
    assert cfg["CodeSize"] == len(zip_bytes)
    assert h.UUID_RE.match(cfg["RevisionId"]), cfg["RevisionId"]
    assert cfg["MemorySize"] == 128
    assert cfg["Timeout"] == 3
    assert cfg["EphemeralStorage"] == {"Size": 512}
    assert cfg["Architectures"] == ["x86_64"]
    assert cfg["TracingConfig"] == {"Mode": "PassThrough"}
    assert cfg["LoggingConfig"]["LogFormat"] == "Text"
    assert cfg["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{fn_name}"
    assert h.LAST_MODIFIED_RE.match(cfg["LastModified"]), cfg["LastModified"]


@pytest.mark.parametrize("runtime", h.SUPPORTED_RUNTIMES)
def test_supported_runtimes_are_accepted(client, runtime):
    name = h.new_name("rt-" + runtime)
    cfg = h.create_function(client, name, Runtime=runtime)
    assert cfg["Runtime"] == runtime


@pytest.mark.parametrize("runtime", ["java21", "python2.7", "cobol"])
def test_unsupported_runtimes_are_rejected(server, raw_client, runtime):
    name = h.new_name("badrt")
    blobs = server.blob_file_count()
    h.api_error(
        raw_client,
        lambda: raw_client.create_function(**h.create_params(name, Runtime=runtime)),
        400,
        "InvalidParameterValueException",
    )
    h.assert_absent(server, raw_client, name, blobs)


def test_create_existing_name_conflicts(server, client, fn_name):
    first = h.create_function(client, fn_name)
    err = h.api_error(
        client, lambda: client.create_function(**h.create_params(fn_name, h.unique_zip())), 409, "ResourceConflictException"
    )
    assert err.message == f"Function already exist: {fn_name}"
    # The original function is untouched.
    cfg = client.get_function_configuration(FunctionName=fn_name)
    assert cfg["CodeSha256"] == first["CodeSha256"]
    assert cfg["RevisionId"] == first["RevisionId"]


def test_get_function_returns_configuration_code_and_tags(server, client, fn_name):
    zip_bytes = h.unique_zip()
    created = h.create_function(client, fn_name, zip_bytes, Tags={"team": "kappa"})
    resp = client.get_function(FunctionName=fn_name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Configuration"] == created
    assert resp["Code"]["RepositoryType"] == "S3"
    location = resp["Code"]["Location"]
    parsed = urllib.parse.urlsplit(location)
    assert parsed.scheme == "http", location
    assert parsed.netloc == f"127.0.0.1:{server.port}", location
    assert h.http_get_bytes(location) == zip_bytes
    assert resp["Tags"] == {"team": "kappa"}


def test_get_function_configuration_matches_get_function(client, fn_name):
    created = h.create_function(client, fn_name)
    cfg = h.strip_meta(client.get_function_configuration(FunctionName=fn_name))
    assert cfg == created
    assert cfg == client.get_function(FunctionName=fn_name)["Configuration"]


def test_function_name_forms(client, fn_name):
    created = h.create_function(client, fn_name)
    arn = created["FunctionArn"]
    forms = [
        fn_name,
        f"000000000000:function:{fn_name}",
        arn,
        f"{fn_name}:$LATEST",
        f"000000000000:function:{fn_name}:$LATEST",
        f"{arn}:$LATEST",
    ]
    for form in forms:
        cfg = client.get_function_configuration(FunctionName=form)
        assert cfg["FunctionName"] == fn_name, form
        assert cfg["RevisionId"] == created["RevisionId"], form
        got = client.get_function(FunctionName=form)
        assert got["Configuration"]["FunctionName"] == fn_name, form
    cfg = client.get_function_configuration(FunctionName=fn_name, Qualifier="$LATEST")
    assert cfg["FunctionName"] == fn_name
    assert cfg["Version"] == "$LATEST"


def test_unknown_function_not_found_messages(client):
    name = h.new_name("missing")
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    for call in (
        lambda: client.get_function_configuration(FunctionName=name),
        lambda: client.get_function(FunctionName=name),
        lambda: client.get_function_configuration(FunctionName=arn),
        lambda: client.get_function_configuration(FunctionName=f"000000000000:function:{name}"),
    ):
        err = h.api_error(client, call, 404, "ResourceNotFoundException")
        assert err.message == f"Function not found: {arn}"
        assert "Message" in err.body
    err = h.api_error(
        client, lambda: client.get_function_configuration(FunctionName=name, Qualifier="7"), 404, "ResourceNotFoundException"
    )
    assert err.message == f"Function not found: {arn}:7"
    err = h.api_error(client, lambda: client.get_function(FunctionName=f"{name}:7"), 404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {arn}:7"


@pytest.mark.extra
def test_missing_version_of_existing_function_is_not_found(client, fn_name):
    created = h.create_function(client, fn_name)
    err = h.api_error(
        client, lambda: client.get_function_configuration(FunctionName=fn_name, Qualifier="7"), 404, "ResourceNotFoundException"
    )
    assert err.message == f"Function not found: {created['FunctionArn']}:7"


def test_update_function_code(server, client, fn_name):
    created = h.create_function(client, fn_name)
    new_zip = h.unique_zip()
    resp = client.update_function_code(FunctionName=fn_name, ZipFile=new_zip)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["CodeSha256"] == h.code_sha256(new_zip)
    assert resp["CodeSize"] == len(new_zip)
    assert resp["CodeSha256"] != created["CodeSha256"]
    assert resp["RevisionId"] != created["RevisionId"]
    assert h.UUID_RE.match(resp["RevisionId"])
    assert resp["LastUpdateStatus"] == "Successful"
    assert resp["State"] == "Active"
    got = client.get_function(FunctionName=fn_name)
    assert got["Configuration"]["CodeSha256"] == h.code_sha256(new_zip)
    assert got["Configuration"]["RevisionId"] == resp["RevisionId"]
    assert h.http_get_bytes(got["Code"]["Location"]) == new_zip


def test_update_function_code_with_matching_revision_id(client, fn_name):
    created = h.create_function(client, fn_name)
    new_zip = h.unique_zip()
    resp = client.update_function_code(FunctionName=fn_name, ZipFile=new_zip, RevisionId=created["RevisionId"])
    assert resp["CodeSha256"] == h.code_sha256(new_zip)


def test_update_function_code_stale_revision_id(client, fn_name):
    created = h.create_function(client, fn_name)
    client.update_function_code(FunctionName=fn_name, ZipFile=h.unique_zip())
    current = client.get_function_configuration(FunctionName=fn_name)
    err = h.api_error(
        client,
        lambda: client.update_function_code(
            FunctionName=fn_name, ZipFile=h.unique_zip(), RevisionId=created["RevisionId"]
        ),
        412,
        "PreconditionFailedException",
    )
    assert err.message == h.PRECONDITION_MESSAGE
    after = client.get_function_configuration(FunctionName=fn_name)
    assert after["CodeSha256"] == current["CodeSha256"]
    assert after["RevisionId"] == current["RevisionId"]


@pytest.mark.extra
def test_update_function_code_with_corrupt_zip_changes_nothing(server, raw_client, fn_name):
    created = h.create_function(raw_client, fn_name)
    err = h.api_error(
        raw_client,
        lambda: raw_client.update_function_code(FunctionName=fn_name, ZipFile=b"this is not a zip file at all"),
        400,
        "InvalidParameterValueException",
    )
    assert err.message == h.UNZIP_MESSAGE
    after = raw_client.get_function_configuration(FunctionName=fn_name)
    assert after["CodeSha256"] == created["CodeSha256"]
    assert after["RevisionId"] == created["RevisionId"]


def test_update_function_configuration(client, fn_name):
    created = h.create_function(client, fn_name)
    resp = client.update_function_configuration(
        FunctionName=fn_name,
        MemorySize=256,
        Timeout=30,
        Description="updated",
        Handler="app.other",
        Environment={"Variables": {"GREETING": "hi", "COUNT": "1"}},
        EphemeralStorage={"Size": 1024},
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["MemorySize"] == 256
    assert resp["Timeout"] == 30
    assert resp["Description"] == "updated"
    assert resp["Handler"] == "app.other"
    assert resp["Environment"] == {"Variables": {"GREETING": "hi", "COUNT": "1"}}
    assert resp["EphemeralStorage"] == {"Size": 1024}
    assert resp["CodeSha256"] == created["CodeSha256"]
    assert resp["RevisionId"] != created["RevisionId"]
    assert resp["LastUpdateStatus"] == "Successful"
    cfg = h.strip_meta(client.get_function_configuration(FunctionName=fn_name))
    assert cfg == h.strip_meta(resp)


def test_update_function_configuration_revision_ids(client, fn_name):
    created = h.create_function(client, fn_name)
    ok = client.update_function_configuration(FunctionName=fn_name, Timeout=10, RevisionId=created["RevisionId"])
    assert ok["Timeout"] == 10
    err = h.api_error(
        client,
        lambda: client.update_function_configuration(FunctionName=fn_name, Timeout=20, RevisionId=created["RevisionId"]),
        412,
        "PreconditionFailedException",
    )
    assert err.message == h.PRECONDITION_MESSAGE
    assert client.get_function_configuration(FunctionName=fn_name)["Timeout"] == 10
    # Omitting RevisionId always works.
    again = client.update_function_configuration(FunctionName=fn_name, Timeout=20)
    assert again["Timeout"] == 20


@pytest.mark.extra
def test_update_unknown_function_is_not_found(client):
    name = h.new_name("nobody")
    h.api_error(client, lambda: client.update_function_configuration(FunctionName=name, Timeout=5), 404,
                "ResourceNotFoundException")
    h.api_error(client, lambda: client.update_function_code(FunctionName=name, ZipFile=h.handler_zip()), 404,
                "ResourceNotFoundException")


def test_update_via_arn_forms(client, fn_name):
    created = h.create_function(client, fn_name)
    client.update_function_configuration(FunctionName=created["FunctionArn"], Timeout=7)
    client.update_function_configuration(FunctionName=f"000000000000:function:{fn_name}", MemorySize=512)
    cfg = client.get_function_configuration(FunctionName=fn_name)
    assert (cfg["Timeout"], cfg["MemorySize"]) == (7, 512)


def test_delete_function(server, client, fn_name):
    h.create_function(client, fn_name)
    resp = client.delete_function(FunctionName=fn_name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    err = h.api_error(client, lambda: client.get_function(FunctionName=fn_name), 404, "ResourceNotFoundException")
    assert err.message == f"Function not found: {server.function_arn(fn_name)}"
    assert fn_name not in [f["FunctionName"] for f in h.list_all_functions(client)]
    h.api_error(client, lambda: client.delete_function(FunctionName=fn_name), 404, "ResourceNotFoundException")


def test_delete_by_arn_and_recreate(client, fn_name):
    created = h.create_function(client, fn_name)
    client.delete_function(FunctionName=created["FunctionArn"])
    h.api_error(client, lambda: client.get_function(FunctionName=fn_name), 404, "ResourceNotFoundException")
    zip_bytes = h.unique_zip()
    again = h.create_function(client, fn_name, zip_bytes)
    assert again["CodeSha256"] == h.code_sha256(zip_bytes)
    assert again["RevisionId"] != created["RevisionId"]


def test_waiters(client, fn_name):
    h.create_function(client, fn_name)
    client.get_waiter("function_active_v2").wait(FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    client.update_function_configuration(FunctionName=fn_name, Timeout=9)
    client.get_waiter("function_updated_v2").wait(FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    client.update_function_code(FunctionName=fn_name, ZipFile=h.unique_zip())
    client.get_waiter("function_updated_v2").wait(FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    client.get_waiter("function_exists").wait(FunctionName=fn_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})


@pytest.mark.extra
def test_concurrent_creates_of_one_name_have_one_winner(server, fn_name):
    clients = [server.client() for _ in range(8)]
    zips = [h.unique_zip() for _ in clients]
    results: list = [None] * len(clients)
    barrier = threading.Barrier(len(clients))

    def go(i):
        barrier.wait()
        try:
            results[i] = clients[i].create_function(**h.create_params(fn_name, zips[i]))
        except Exception as exc:  # noqa: BLE001 - recorded and checked below
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    losers = [r for r in results if not isinstance(r, dict)]
    assert len(winners) == 1, f"{len(winners)} concurrent creates of one name succeeded: {results}"
    for exc in losers:
        assert getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceConflictException", exc
    cfg = clients[0].get_function_configuration(FunctionName=fn_name)
    assert cfg["CodeSha256"] == h.code_sha256(zips[winners[0]])
    assert cfg["RevisionId"] == results[winners[0]]["RevisionId"]


@pytest.mark.extra
def test_concurrent_updates_with_one_revision_id_have_one_winner(server, fn_name):
    created = h.create_function(server.client(), fn_name)
    clients = [server.client() for _ in range(8)]
    results: list = [None] * len(clients)
    barrier = threading.Barrier(len(clients))

    def go(i):
        barrier.wait()
        try:
            results[i] = clients[i].update_function_configuration(
                FunctionName=fn_name, Timeout=10 + i, RevisionId=created["RevisionId"]
            )
        except Exception as exc:  # noqa: BLE001
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(winners) == 1, f"{len(winners)} updates with the same RevisionId succeeded: {results}"
    for r in results:
        if not isinstance(r, dict):
            assert getattr(r, "response", {}).get("Error", {}).get("Code") == "PreconditionFailedException", r
    cfg = clients[0].get_function_configuration(FunctionName=fn_name)
    assert cfg["Timeout"] == 10 + winners[0]
    assert cfg["RevisionId"] == results[winners[0]]["RevisionId"]
