"""Layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions,
DeleteLayerVersion, the layer version permissions, functions' `Layers`, and layers at /opt of
running functions (Python, Node.js, provided), with boto3 and the AWS CLI."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

import kappa_helpers as h

LAYER_ARN_RE = re.compile(r"^arn:aws:lambda:us-east-1:000000000000:layer:[a-zA-Z0-9-_]+$")
LAYER_NAME_PATTERN = r"(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+"


def layer_arn(name: str) -> str:
    return f"arn:aws:lambda:{h.REGION}:{h.ACCOUNT_ID}:layer:{name}"


def publish(client, name: str, files: dict | None = None, executables=(), **kwargs) -> dict:
    content = h.zip_package(files or {"python/marker.py": f"NAME = {name!r}\n"}, executables)
    resp = client.publish_layer_version(LayerName=name, Content={"ZipFile": content}, **kwargs)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201, resp["ResponseMetadata"]
    return h.strip_meta(resp)


def zeros_zip(entries: dict[str, int | bytes]) -> bytes:
    """A deflated zip: int values are files of that many zero bytes (tiny once compressed)."""
    buf = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            if isinstance(content, bytes):
                zf.writestr(info, content)
                continue
            with zf.open(info, "w") as dest:
                left = content
                while left:
                    n = min(left, len(chunk))
                    dest.write(chunk[:n])
                    left -= n
    return buf.getvalue()


@pytest.fixture
def layer_name(request) -> str:
    return h.new_name("layer-" + request.node.name[:20])


# ---- publish / get / delete ------------------------------------------------------------------


def test_publish_get_and_download(client, server, layer_name):
    content = h.zip_package({"python/mod.py": "X = 1\n"})
    resp = client.publish_layer_version(
        LayerName=layer_name, Description="first", Content={"ZipFile": content},
        CompatibleRuntimes=["python3.12", "python3.11"], CompatibleArchitectures=["x86_64"],
        LicenseInfo="MIT",
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert resp["LayerArn"] == layer_arn(layer_name)
    assert resp["LayerVersionArn"] == layer_arn(layer_name) + ":1"
    assert resp["Version"] == 1
    assert resp["Description"] == "first"
    assert resp["CompatibleRuntimes"] == ["python3.12", "python3.11"]
    assert resp["CompatibleArchitectures"] == ["x86_64"]
    assert resp["LicenseInfo"] == "MIT"
    assert h.LAST_MODIFIED_RE.match(resp["CreatedDate"]), resp["CreatedDate"]
    assert resp["Content"]["CodeSha256"] == h.code_sha256(content)
    assert resp["Content"]["CodeSize"] == len(content)
    assert h.http_get_bytes(resp["Content"]["Location"]) == content

    got = h.strip_meta(client.get_layer_version(LayerName=layer_name, VersionNumber=1))
    published = h.strip_meta(resp)
    assert got == published
    by_arn = h.strip_meta(client.get_layer_version_by_arn(Arn=resp["LayerVersionArn"]))
    assert by_arn == published
    # The layer may also be named by its ARN.
    assert h.strip_meta(client.get_layer_version(LayerName=layer_arn(layer_name), VersionNumber=1)) == published


def test_optional_members_are_omitted(client, layer_name):
    resp = publish(client, layer_name)
    assert "CompatibleRuntimes" not in resp and "CompatibleArchitectures" not in resp
    assert "LicenseInfo" not in resp


def test_missing_versions_are_404(client, layer_name):
    publish(client, layer_name)
    err = h.api_error(client, lambda: client.get_layer_version(LayerName=layer_name, VersionNumber=2),
                      404, "ResourceNotFoundException")
    assert err.message == f"Layer version {layer_arn(layer_name)}:2 does not exist."
    err = h.api_error(client, lambda: client.get_layer_version_by_arn(Arn=layer_arn("nope-" + layer_name) + ":1"),
                      404, "ResourceNotFoundException")
    assert err.message == f"Layer version {layer_arn('nope-' + layer_name)}:1 does not exist."


def test_version_numbers_are_never_reused_and_delete_is_idempotent(client, layer_name):
    assert publish(client, layer_name)["Version"] == 1
    assert publish(client, layer_name)["Version"] == 2
    for _ in range(2):
        resp = client.delete_layer_version(LayerName=layer_name, VersionNumber=2)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    # Deleting in a layer that never existed succeeds too, as on AWS.
    assert client.delete_layer_version(LayerName="never-" + layer_name, VersionNumber=1)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    h.api_error(client, lambda: client.get_layer_version(LayerName=layer_name, VersionNumber=2),
                404, "ResourceNotFoundException")
    assert publish(client, layer_name)["Version"] == 3
    client.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    client.delete_layer_version(LayerName=layer_name, VersionNumber=3)
    assert client.list_layer_versions(LayerName=layer_name)["LayerVersions"] == []
    assert publish(client, layer_name)["Version"] == 4


def test_delete_removes_an_unused_blob(client, server, layer_name):
    before = server.blob_file_count()
    publish(client, layer_name, {"python/x.py": h.new_name("unique")})
    assert server.blob_file_count() == before + 1
    client.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    assert server.blob_file_count() == before


# ---- validation ----------------------------------------------------------------------------


def publish_rejected(server, client, name: str, status: int, code: str, **params) -> h.ApiError:
    params.setdefault("Content", {"ZipFile": h.zip_package({"python/" + h.new_name("u") + ".py": ""})})
    blobs = server.blob_file_count()
    err = h.api_error(client, lambda: client.publish_layer_version(LayerName=name, **params), status, code)
    assert server.blob_file_count() == blobs, "a rejected publish left a blob behind"
    if re.fullmatch(r"[a-zA-Z0-9-_]{1,140}", name):
        assert client.list_layer_versions(LayerName=name)["LayerVersions"] == []
    return err


def test_compatible_runtimes_limit(server, raw_client, layer_name):
    runtimes = ["python3.12"] * 15
    assert publish(raw_client, layer_name, CompatibleRuntimes=runtimes)["CompatibleRuntimes"] == runtimes
    err = publish_rejected(server, raw_client, layer_name + "x", 400, "ValidationException",
                           CompatibleRuntimes=runtimes + ["python3.12"])
    assert err.message == (
        "1 validation error detected: Value '[" + ", ".join(["python3.12"] * 16)
        + "]' at 'compatibleRuntimes' failed to satisfy constraint: "
        "Member must have length less than or equal to 15")
    err = publish_rejected(server, raw_client, layer_name + "y", 400, "ValidationException",
                           CompatibleRuntimes=["cobol"])
    assert "at 'compatibleRuntimes' failed to satisfy constraint: Member must satisfy constraint: " \
           "[Member must satisfy enum value set: [nodejs, " in err.message


def test_compatible_architectures_limit(server, raw_client, layer_name):
    assert publish(raw_client, layer_name, CompatibleArchitectures=["x86_64", "arm64"])[
        "CompatibleArchitectures"] == ["x86_64", "arm64"]
    err = publish_rejected(server, raw_client, layer_name + "x", 400, "ValidationException",
                           CompatibleArchitectures=["x86_64", "arm64", "x86_64"])
    assert err.message == (
        "1 validation error detected: Value '[x86_64, arm64, x86_64]' at 'compatibleArchitectures' "
        "failed to satisfy constraint: Member must have length less than or equal to 2")
    err = publish_rejected(server, raw_client, layer_name + "y", 400, "ValidationException",
                           CompatibleArchitectures=["sparc"])
    assert err.message.endswith("Member must satisfy enum value set: [x86_64, arm64]]")


def test_license_and_description_limits(server, raw_client, layer_name):
    assert publish(raw_client, layer_name, LicenseInfo="l" * 512, Description="d" * 256)["LicenseInfo"] == "l" * 512
    err = publish_rejected(server, raw_client, layer_name + "x", 400, "ValidationException", LicenseInfo="l" * 513)
    assert err.message == (f"1 validation error detected: Value '{'l' * 513}' at 'licenseInfo' failed to satisfy "
                           "constraint: Member must have length less than or equal to 512")
    err = publish_rejected(server, raw_client, layer_name + "y", 400, "ValidationException", Description="d" * 257)
    assert "at 'description' failed to satisfy constraint: Member must have length less than or equal to 256" \
        in err.message


def test_layer_name_limits(server, raw_client):
    name = ("n" * 132) + h.new_name("")[-8:]
    assert len(name) == 140
    assert publish(raw_client, name)["LayerArn"] == layer_arn(name)
    over = name + "x"
    err = publish_rejected(server, raw_client, over, 400, "ValidationException")
    assert err.message == (f"1 validation error detected: Value '{over}' at 'layerName' failed to satisfy "
                           "constraint: Member must have length less than or equal to 140")
    err = publish_rejected(server, raw_client, "bad.name", 400, "ValidationException")
    assert err.message == ("1 validation error detected: Value 'bad.name' at 'layerName' failed to satisfy "
                           f"constraint: Member must satisfy regular expression pattern: {LAYER_NAME_PATTERN}")


def test_content_sources(server, raw_client, layer_name):
    err = publish_rejected(server, raw_client, layer_name, 400, "InvalidParameterValueException",
                           Content={"S3Bucket": "b", "S3Key": "k.zip"})
    assert "S3" in err.message and "ZipFile" in err.message
    err = publish_rejected(server, raw_client, layer_name, 400, "InvalidParameterValueException",
                           Content={"ZipFile": b"not a zip"})
    assert err.message == h.UNZIP_MESSAGE


@pytest.mark.slow
def test_layer_unzipped_limit(server, raw_client, layer_name):
    ok = zeros_zip({"data/zeros.bin": h.UNZIPPED_LIMIT})
    over = zeros_zip({"data/zeros.bin": h.UNZIPPED_LIMIT + 1})
    resp = raw_client.publish_layer_version(LayerName=layer_name, Content={"ZipFile": ok})
    assert resp["Version"] == 1
    err = publish_rejected(server, raw_client, layer_name + "x", 400, "InvalidParameterValueException",
                           Content={"ZipFile": over})
    assert err.message == f"Unzipped size must be smaller than {h.UNZIPPED_LIMIT} bytes"
    raw_client.delete_layer_version(LayerName=layer_name, VersionNumber=1)


# ---- listing ---------------------------------------------------------------------------------


def test_list_layers_latest_matching_version_and_filters(client, layer_name):
    a, b = layer_name + "-a", layer_name + "-b"
    publish(client, a, CompatibleRuntimes=["python3.12"], CompatibleArchitectures=["x86_64"])
    publish(client, a, CompatibleRuntimes=["nodejs20.x"], CompatibleArchitectures=["arm64"])
    publish(client, b, CompatibleRuntimes=["python3.12"], Description="b1")

    mine = lambda layers: {l["LayerName"]: l for l in layers if l["LayerName"].startswith(layer_name)}  # noqa: E731
    listed = mine(client.list_layers()["Layers"])
    assert set(listed) == {a, b}
    assert listed[a]["LayerArn"] == layer_arn(a)
    assert listed[a]["LatestMatchingVersion"]["Version"] == 2
    assert listed[a]["LatestMatchingVersion"]["LayerVersionArn"] == layer_arn(a) + ":2"
    assert listed[b]["LatestMatchingVersion"]["Description"] == "b1"
    assert "Content" not in listed[a]["LatestMatchingVersion"]

    python = mine(client.list_layers(CompatibleRuntime="python3.12")["Layers"])
    assert python[a]["LatestMatchingVersion"]["Version"] == 1
    assert python[b]["LatestMatchingVersion"]["Version"] == 1
    node = mine(client.list_layers(CompatibleRuntime="nodejs20.x")["Layers"])
    assert set(node) == {a}
    arm = mine(client.list_layers(CompatibleArchitecture="arm64")["Layers"])
    assert set(arm) == {a} and arm[a]["LatestMatchingVersion"]["Version"] == 2
    both = mine(client.list_layers(CompatibleRuntime="python3.12", CompatibleArchitecture="arm64")["Layers"])
    assert both == {}


def test_list_layers_pages(client, raw_client, layer_name):
    names = [f"{layer_name}-{i}" for i in range(3)]
    for name in names:
        publish(client, name)
    seen = []
    for page in client.get_paginator("list_layers").paginate(PaginationConfig={"PageSize": 1}):
        assert len(page["Layers"]) <= 1
        seen.extend(l["LayerName"] for l in page["Layers"])
    assert [n for n in seen if n.startswith(layer_name)] == names
    first = client.list_layers(MaxItems=1)
    assert len(first["Layers"]) == 1 and "NextMarker" in first
    assert len(client.list_layers(MaxItems=50)["Layers"]) >= 3
    for bad, bound in ((0, "greater than or equal to 1"), (51, "less than or equal to 50")):
        err = h.api_error(raw_client, lambda: raw_client.list_layers(MaxItems=bad), 400, "ValidationException")
        assert err.message == (f"1 validation error detected: Value '{bad}' at 'maxItems' failed to satisfy "
                               f"constraint: Member must have value {bound}")


def test_list_layer_versions_newest_first_filters_and_pages(client, raw_client, layer_name):
    publish(client, layer_name, CompatibleRuntimes=["python3.12"])
    publish(client, layer_name, CompatibleRuntimes=["nodejs20.x"])
    publish(client, layer_name, CompatibleRuntimes=["python3.12"])
    versions = client.list_layer_versions(LayerName=layer_name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [3, 2, 1]
    assert versions[0]["LayerVersionArn"] == layer_arn(layer_name) + ":3"
    assert versions[0]["CompatibleRuntimes"] == ["python3.12"]
    python = client.list_layer_versions(LayerName=layer_name, CompatibleRuntime="python3.12")["LayerVersions"]
    assert [v["Version"] for v in python] == [3, 1]
    pages = list(client.get_paginator("list_layer_versions").paginate(
        LayerName=layer_name, PaginationConfig={"PageSize": 2}))
    assert [[v["Version"] for v in p["LayerVersions"]] for p in pages] == [[3, 2], [1]]
    assert client.list_layer_versions(LayerName="none-" + layer_name)["LayerVersions"] == []
    err = h.api_error(raw_client, lambda: raw_client.list_layer_versions(LayerName=layer_name, MaxItems=51),
                      400, "ValidationException")
    assert "at 'maxItems'" in err.message
    err = h.api_error(raw_client, lambda: raw_client.list_layers(CompatibleRuntime="cobol"),
                      400, "ValidationException")
    assert err.message.startswith("1 validation error detected: Value 'cobol' at 'compatibleRuntime' failed to "
                                  "satisfy constraint: Member must satisfy enum value set: [nodejs, ")
    err = h.api_error(raw_client, lambda: raw_client.list_layers(CompatibleArchitecture="sparc"),
                      400, "ValidationException")
    assert err.message == ("1 validation error detected: Value 'sparc' at 'compatibleArchitecture' failed to "
                           "satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]")
    err = h.api_error(raw_client, lambda: raw_client.get_layer_version_by_arn(Arn=layer_arn(layer_name)),
                      400, "ValidationException")
    assert err.message == (f"1 validation error detected: Value '{layer_arn(layer_name)}' at 'arn' failed to "
                           "satisfy constraint: Member must satisfy regular expression pattern: "
                           r"arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+")


# ---- permissions -----------------------------------------------------------------------------


def test_layer_permissions(client, raw_client, layer_name):
    publish(client, layer_name)
    resource = layer_arn(layer_name) + ":1"
    err = h.api_error(client, lambda: client.get_layer_version_policy(LayerName=layer_name, VersionNumber=1),
                      404, "ResourceNotFoundException")
    assert err.message == "No policy is associated with the given resource."

    everyone = client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="everyone", Action="lambda:GetLayerVersion",
        Principal="*")
    assert everyone["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(everyone["Statement"]) == {
        "Sid": "everyone", "Effect": "Allow", "Principal": "*", "Action": "lambda:GetLayerVersion",
        "Resource": resource}
    assert h.UUID_RE.match(everyone["RevisionId"])

    org = client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="org", Action="lambda:GetLayerVersion",
        Principal="*", OrganizationId="o-abcdefghij")
    assert json.loads(org["Statement"])["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}

    err = h.api_error(client, lambda: client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="acct", Action="lambda:GetLayerVersion",
        Principal="111122223333", RevisionId=everyone["RevisionId"]), 412, "PreconditionFailedException")
    assert err.message.startswith("The Revision Id provided does not match the latest Revision Id.")
    account = client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="acct", Action="lambda:GetLayerVersion",
        Principal="111122223333", RevisionId=org["RevisionId"])
    assert json.loads(account["Statement"])["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}

    err = h.api_error(client, lambda: client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="acct", Action="lambda:GetLayerVersion",
        Principal="*"), 409, "ResourceConflictException")
    assert err.message == ("The statement id (acct) provided already exists. Please provide a new statement id, "
                           "or remove the existing statement.")

    policy = client.get_layer_version_policy(LayerName=layer_name, VersionNumber=1)
    assert policy["RevisionId"] == account["RevisionId"]
    document = json.loads(policy["Policy"])
    assert document["Version"] == "2012-10-17" and document["Id"] == "default"
    assert [s["Sid"] for s in document["Statement"]] == ["everyone", "org", "acct"]

    err = h.api_error(client, lambda: client.remove_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="nobody"), 404, "ResourceNotFoundException")
    assert err.message == "Statement nobody is not found in resource policy."
    err = h.api_error(client, lambda: client.remove_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="org", RevisionId=org["RevisionId"]),
        412, "PreconditionFailedException")
    assert err.message == ("The Revision Id provided does not match the latest Revision Id. Call the "
                           "GetLayerPolicy API to retrieve the latest Revision Id")
    err = h.api_error(client, lambda: client.get_layer_version_policy(LayerName=layer_name, VersionNumber=5),
                      404, "ResourceNotFoundException")
    assert err.message == f"Layer version {layer_arn(layer_name)}:5 does not exist."
    for sid in ("everyone", "org", "acct"):
        resp = client.remove_layer_version_permission(LayerName=layer_name, VersionNumber=1, StatementId=sid)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    h.api_error(client, lambda: client.get_layer_version_policy(LayerName=layer_name, VersionNumber=1),
                404, "ResourceNotFoundException")

    err = h.api_error(raw_client, lambda: raw_client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="s", Action="lambda:InvokeFunction", Principal="*"),
        400, "ValidationException")
    assert "at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: " \
           "lambda:GetLayerVersion" in err.message
    err = h.api_error(raw_client, lambda: raw_client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="s" * 101, Action="lambda:GetLayerVersion",
        Principal="*"), 400, "ValidationException")
    assert "at 'statementId' failed to satisfy constraint: Member must have length less than or equal to 100" \
        in err.message
    assert client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=1, StatementId="s" * 100, Action="lambda:GetLayerVersion",
        Principal="*")["ResponseMetadata"]["HTTPStatusCode"] == 201
    err = h.api_error(client, lambda: client.add_layer_version_permission(
        LayerName=layer_name, VersionNumber=7, StatementId="s", Action="lambda:GetLayerVersion", Principal="*"),
        404, "ResourceNotFoundException")
    assert err.message == f"Layer version {layer_arn(layer_name)}:7 does not exist."


# ---- functions' Layers -------------------------------------------------------------------------


def test_function_layers_in_configuration(client, fn_name, layer_name):
    first = publish(client, layer_name)
    second = publish(client, layer_name + "-2")
    plain = h.create_function(client, fn_name + "-plain")
    assert "Layers" not in plain
    created = h.create_function(client, fn_name, Layers=[first["LayerVersionArn"], second["LayerVersionArn"]])
    assert created["Layers"] == [
        {"Arn": first["LayerVersionArn"], "CodeSize": first["Content"]["CodeSize"]},
        {"Arn": second["LayerVersionArn"], "CodeSize": second["Content"]["CodeSize"]},
    ]
    assert client.get_function(FunctionName=fn_name)["Configuration"]["Layers"] == created["Layers"]
    updated = client.update_function_configuration(FunctionName=fn_name, Layers=[second["LayerVersionArn"]])
    assert updated["Layers"] == [created["Layers"][1]]
    assert updated["RevisionId"] != created["RevisionId"]
    kept = client.update_function_configuration(FunctionName=fn_name, Description="layers stay")
    assert kept["Layers"] == updated["Layers"]
    cleared = client.update_function_configuration(FunctionName=fn_name, Layers=[])
    assert "Layers" not in cleared
    assert "Layers" not in client.get_function_configuration(FunctionName=fn_name)


def test_function_layer_rules(server, client, fn_name, layer_name):
    arns = [publish(client, f"{layer_name}-{i}")["LayerVersionArn"] for i in range(6)]
    assert len(h.create_function(client, fn_name + "-five", Layers=arns[:5])["Layers"]) == 5
    err = h.assert_create_rejected(server, client, h.create_params(fn_name, Layers=arns), 400,
                                   "InvalidParameterValueException")
    assert err.message == "Cannot reference more than 5 layers."
    missing = layer_arn(layer_name + "-0") + ":9"
    err = h.assert_create_rejected(server, client, h.create_params(fn_name, Layers=[missing]), 400,
                                   "InvalidParameterValueException")
    assert err.message == f"Layer version {missing} does not exist."
    newer = publish(client, f"{layer_name}-0")["LayerVersionArn"]
    err = h.assert_create_rejected(server, client, h.create_params(fn_name, Layers=[arns[0], newer]), 400,
                                   "InvalidParameterValueException")
    assert err.message == ("Two different versions of the same layer are not allowed to be referenced in the "
                           "same function.")
    # UpdateFunctionConfiguration applies the same rules and changes nothing when it refuses.
    h.create_function(client, fn_name, Layers=[arns[0]])
    before = client.get_function_configuration(FunctionName=fn_name)
    err = h.api_error(client, lambda: client.update_function_configuration(FunctionName=fn_name, Layers=arns),
                      400, "InvalidParameterValueException")
    assert err.message == "Cannot reference more than 5 layers."
    err = h.api_error(client, lambda: client.update_function_configuration(FunctionName=fn_name, Layers=[missing]),
                      400, "InvalidParameterValueException")
    assert err.message == f"Layer version {missing} does not exist."
    after = client.get_function_configuration(FunctionName=fn_name)
    assert (after["RevisionId"], after["Layers"]) == (before["RevisionId"], before["Layers"])


@pytest.mark.slow
def test_code_and_layers_unzipped_limit(server, client, raw_client, fn_name, layer_name):
    limit = h.UNZIPPED_LIMIT
    layer_size = 150_000_000
    layer = raw_client.publish_layer_version(
        LayerName=layer_name, Content={"ZipFile": zeros_zip({"data/zeros.bin": layer_size})})
    arn = layer["LayerVersionArn"]
    code = h.HANDLER_SOURCE

    def function_zip(total: int) -> bytes:
        return zeros_zip({"app.py": code, "zeros.bin": total - layer_size - len(code)})

    created = h.create_function(raw_client, fn_name, function_zip(limit), Layers=[arn])
    assert created["Layers"][0]["Arn"] == arn
    err = h.assert_create_rejected(server, raw_client, h.create_params(fn_name + "-over", function_zip(limit + 1),
                                                                       Layers=[arn]),
                                   400, "InvalidParameterValueException")
    assert err.message == (f"Function code combined with layers exceeds the maximum allowed size of {limit} "
                           f"bytes. The actual size is {limit + 1} bytes.")
    # The same rule for UpdateFunctionCode and UpdateFunctionConfiguration.
    err = h.api_error(raw_client, lambda: raw_client.update_function_code(
        FunctionName=fn_name, ZipFile=function_zip(limit + 1)), 400, "InvalidParameterValueException")
    assert err.message.endswith(f"The actual size is {limit + 1} bytes.")
    h.create_function(raw_client, fn_name + "-later", function_zip(limit + 1))
    # Without layers that package alone is fine; adding the layer is not.
    err = h.api_error(raw_client, lambda: raw_client.update_function_configuration(
        FunctionName=fn_name + "-later", Layers=[arn]), 400, "InvalidParameterValueException")
    assert err.message.endswith(f"The actual size is {limit + 1} bytes.")


def test_account_settings_count_layer_storage(client, layer_name):
    before = client.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    layer = publish(client, layer_name, {"python/" + h.new_name("u") + ".py": "x = 1\n"})
    after = client.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    assert after == before + layer["Content"]["CodeSize"]
    client.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    assert client.get_account_settings()["AccountUsage"]["TotalCodeSize"] == before


# ---- layers at /opt ---------------------------------------------------------------------------

PY_HANDLER = b"""
import sys
import shared
from_layer = __import__("from_layer")
from_site = __import__("from_site")

def handler(event, context):
    return {"layer": from_layer.VALUE, "site": from_site.VALUE, "shared": shared.WHO,
            "path": sys.path, "version": "%d.%d" % sys.version_info[:2]}
"""


def py_zip() -> bytes:
    """The handler above in a package of its own (a unique blob)."""
    return h.build_zip({"app.py": PY_HANDLER + b"# " + h.new_name("pkg").encode() + b"\n"})


def python_layer(tag: str, shared_from: str) -> dict:
    files = {"python/from_layer.py": f"VALUE = {tag!r}\n", "python/shared.py": f"WHO = {shared_from!r}\n"}
    for minor in range(9, 15):
        files[f"python/lib/python3.{minor}/site-packages/from_site.py"] = f"VALUE = 'site-{tag}'\n"
    return files


def test_python_imports_from_layers_later_overrides_earlier(client, fn_name, layer_name):
    one = publish(client, layer_name + "-1", python_layer("one", "one"))["LayerVersionArn"]
    two = publish(client, layer_name + "-2", {"python/shared.py": "WHO = 'two'\n"})["LayerVersionArn"]
    h.create_function(client, fn_name, py_zip(), Layers=[one, two], Timeout=20)
    out = h.invoke_ok(client, fn_name).json()
    assert (out["layer"], out["site"], out["shared"]) == ("one", "site-one", "two")
    site = f"/opt/python/lib/python{out['version']}/site-packages"
    assert out["path"][:4] == ["/var/task", site, "/opt/python", "/var/runtime"], out["path"]
    # Reordering the layers changes the revision: the next invoke runs in a new environment.
    client.update_function_configuration(FunctionName=fn_name, Layers=[two, one])
    out = h.invoke_ok(client, fn_name).json()
    assert out["shared"] == "one"


NODE_HANDLER = b"""
const greet = require('greet');
const versioned = require('versioned');
exports.handler = async () => ({ greet: greet(), versioned, nodePath: process.env.NODE_PATH });
"""


def test_node_requires_from_layer(client, fn_name, layer_name):
    files = {"nodejs/node_modules/greet/index.js": "module.exports = () => 'hello from a layer';\n"}
    for major in range(18, 25):
        files[f"nodejs/node{major}/node_modules/versioned/index.js"] = f"module.exports = 'node{major}';\n"
    arn = publish(client, layer_name, files)["LayerVersionArn"]
    h.create_function(client, fn_name, h.build_zip({"app.js": NODE_HANDLER}), Runtime="nodejs20.x",
                      Handler="app.handler", Layers=[arn], Timeout=20)
    out = h.invoke_ok(client, fn_name).json()
    assert out["greet"] == "hello from a layer"
    major = out["versioned"].removeprefix("node")
    assert out["nodePath"].split(":")[:2] == [f"/opt/nodejs/node{major}/node_modules", "/opt/nodejs/node_modules"]


def provided_layer_files() -> dict:
    handler = 'respond_text "$(layer-tool):$(cat /opt/data.txt):$LD_LIBRARY_PATH"'
    return {
        "bootstrap": h.shell_bootstrap(handler),
        "bin/layer-tool": "#!/bin/sh\necho tool-from-layer\n",
        "data.txt": "layer-data",
    }


def test_provided_runtime_with_bootstrap_only_in_a_layer(client, fn_name, layer_name):
    arn = publish(client, layer_name, provided_layer_files(), executables=("bootstrap", "bin/layer-tool"))[
        "LayerVersionArn"]
    h.create_custom_function(client, fn_name, bootstrap=None, files={"readme.txt": "no bootstrap here"},
                             Layers=[arn])
    tool, data, library_path = h.invoke_ok(client, fn_name, {}).payload.decode().split(":", 2)
    assert (tool, data) == ("tool-from-layer", "layer-data")
    assert library_path.endswith(":/opt/lib"), library_path
    # Without the layer there is no bootstrap at all.
    client.update_function_configuration(FunctionName=fn_name, Layers=[])
    result = h.invoke(client, fn_name, {})
    assert result.function_error == "Unhandled"
    assert result.json()["errorType"] == "Runtime.InvalidEntrypoint"
    assert "[/var/task/bootstrap /opt/bootstrap]" in result.json()["errorMessage"]


def test_deleted_layer_version_keeps_working_for_its_functions(server, client, fn_name, layer_name):
    arn = publish(client, layer_name, python_layer(layer_name, "x"))["LayerVersionArn"]
    h.create_function(client, fn_name, py_zip(), Layers=[arn], Timeout=20)
    blobs = server.blob_file_count()
    client.delete_layer_version(LayerName=layer_name, VersionNumber=1)
    assert server.blob_file_count() == blobs, "the blob of a layer version in use was removed"
    h.api_error(client, lambda: client.get_layer_version_by_arn(Arn=arn), 404, "ResourceNotFoundException")
    assert client.get_function_configuration(FunctionName=fn_name)["Layers"][0]["Arn"] == arn
    # A configuration change starts new environments: they still get the layer.
    client.update_function_configuration(FunctionName=fn_name, Description="after delete")
    assert h.invoke_ok(client, fn_name).json()["layer"] == layer_name
    # No new function may use it.
    err = h.api_error(client, lambda: client.create_function(**h.create_params(fn_name + "-new", Layers=[arn])),
                      400, "InvalidParameterValueException")
    assert err.message == f"Layer version {arn} does not exist."
    # Once no function refers to it, its copy goes.
    client.delete_function(FunctionName=fn_name)
    assert server.blob_file_count() == blobs - 2


def test_layer_blobs_survive_a_restart(server_factory, tmp_path):
    srv = server_factory()
    client = srv.client()
    name = h.new_name("restart")
    used = publish(client, name + "-used", python_layer("used", "used"))
    unused = publish(client, name + "-unused")
    deleted = publish(client, name + "-deleted", python_layer("deleted", "deleted"))
    fn = h.new_name("restart-fn")
    h.create_function(client, fn, py_zip(),
                      Layers=[used["LayerVersionArn"], deleted["LayerVersionArn"]], Timeout=20)
    client.delete_layer_version(LayerName=name + "-deleted", VersionNumber=1)
    blobs = srv.blob_file_count()
    srv.stop()
    srv.start()
    client = srv.client()
    assert srv.blob_file_count() == blobs
    for layer in (used, unused):
        got = client.get_layer_version_by_arn(Arn=layer["LayerVersionArn"])
        assert h.http_get_bytes(got["Content"]["Location"])
    out = h.invoke_ok(client, fn).json()
    assert (out["layer"], out["shared"]) == ("deleted", "deleted")
    assert publish(client, name + "-deleted")["Version"] == 2


def test_layers_without_isolation(server_factory, layer_name):
    """`--isolation unsafe-none` has no mount namespace: layers are not at /opt, the runtimes are
    told where they are (`_KAPPA_OPT_DIR`) and PATH / LD_LIBRARY_PATH name that directory."""
    srv = server_factory(env={"KAPPA_ISOLATION": "unsafe-none"})
    client = srv.client()
    arn = publish(client, layer_name, python_layer("free", "free"))["LayerVersionArn"]
    fn = h.new_name("unisolated")
    h.create_function(client, fn, py_zip(), Layers=[arn], Timeout=20)
    out = h.invoke_ok(client, fn).json()
    assert (out["layer"], out["site"]) == ("free", "site-free")
    opt = out["path"][2]
    assert opt.endswith("/python") and opt.startswith(str(srv.data_dir)), out["path"]
    custom = h.new_name("unisolated-rt")
    # The shell runtime reads /opt/data.txt; without a namespace it reads from the layer dir.
    files = provided_layer_files()
    files["bootstrap"] = h.shell_bootstrap('respond_text "$(layer-tool):$(cat "$_KAPPA_OPT_DIR/data.txt")"')
    tools = publish(client, layer_name + "-rt", files, executables=("bootstrap", "bin/layer-tool"))[
        "LayerVersionArn"]
    h.create_custom_function(client, custom, bootstrap=None, files={"readme.txt": "x"}, Layers=[tools])
    assert h.invoke_ok(client, custom, {}).payload == b"tool-from-layer:layer-data"


# ---- AWS CLI ---------------------------------------------------------------------------------


def test_aws_cli_layer_commands(server, tmp_path, layer_name):
    package = tmp_path / "layer.zip"
    package.write_bytes(h.zip_package({"python/cli.py": "X = 1\n"}))
    cli = lambda *args, **kw: h.aws_cli(server.url, tmp_path, "lambda", *args, **kw)  # noqa: E731
    published = cli("publish-layer-version", "--layer-name", layer_name, "--zip-file", f"fileb://{package}",
                    "--compatible-runtimes", "python3.12", "--description", "from the cli")
    assert published["Version"] == 1 and published["Description"] == "from the cli"
    listed = cli("list-layers", "--compatible-runtime", "python3.12")
    assert layer_name in [l["LayerName"] for l in listed["Layers"]]
    versions = cli("list-layer-versions", "--layer-name", layer_name)
    assert [v["Version"] for v in versions["LayerVersions"]] == [1]
    got = cli("get-layer-version-by-arn", "--arn", published["LayerVersionArn"])
    assert got["Content"]["CodeSha256"] == published["Content"]["CodeSha256"]
    added = cli("add-layer-version-permission", "--layer-name", layer_name, "--version-number", "1",
                "--statement-id", "all", "--action", "lambda:GetLayerVersion", "--principal", "*")
    assert json.loads(added["Statement"])["Sid"] == "all"
    assert json.loads(cli("get-layer-version-policy", "--layer-name", layer_name, "--version-number", "1")[
        "Policy"])["Statement"][0]["Sid"] == "all"
    cli("remove-layer-version-permission", "--layer-name", layer_name, "--version-number", "1",
        "--statement-id", "all")
    cli("delete-layer-version", "--layer-name", layer_name, "--version-number", "1")
    proc = cli("get-layer-version", "--layer-name", layer_name, "--version-number", "1", check=False)
    assert proc.returncode != 0 and "ResourceNotFoundException" in proc.stderr
