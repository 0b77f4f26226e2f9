"""The AWS CLI (v1, from pip) against a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kappa_helpers as h


def aws_executable() -> str:
    candidate = Path(sys.executable).parent / "aws"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("aws")
    if not found:
        pytest.fail("the `aws` CLI is not installed (pip install -r tests/integration/requirements.txt)")
    return found


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    home = tmp_path_factory.mktemp("aws-home")
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("AWS_"):
            del env[key]
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
        HOME=str(home),
    )
    exe = aws_executable()

    def run(*args: str, check: bool = True):
        cmd = [exe, "lambda", *args, "--endpoint-url", server.url, "--output", "json"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        if check:
            assert proc.returncode == 0, f"{' '.join(args)} -> exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}"
            return json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc

    return run


def test_cli_function_lifecycle(server, aws, tmp_path):
    name = h.new_name("cli")
    zip_bytes = h.unique_zip()
    zip_path = tmp_path / "f.zip"
    zip_path.write_bytes(zip_bytes)

    created = aws(
        "create-function", "--function-name", name, "--runtime", "python3.12",
        "--role", "arn:aws:iam::000000000000:role/lambda-role", "--handler", "app.handler",
        "--zip-file", f"fileb://{zip_path}",
    )
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == server.function_arn(name)
    assert created["CodeSha256"] == h.code_sha256(zip_bytes)
    assert created["State"] == "Active"

    got = aws("get-function", "--function-name", name)
    assert got["Configuration"]["RevisionId"] == created["RevisionId"]
    assert got["Code"]["RepositoryType"] == "S3"
    assert h.http_get_bytes(got["Code"]["Location"]) == zip_bytes

    listed = aws("list-functions")
    assert name in [f["FunctionName"] for f in listed["Functions"]]

    updated = aws(
        "update-function-configuration", "--function-name", name, "--memory-size", "256", "--timeout", "30",
        "--environment", "Variables={GREETING=hello,COUNT=2}",
    )
    assert updated["MemorySize"] == 256
    assert updated["Timeout"] == 30
    assert updated["Environment"]["Variables"] == {"GREETING": "hello", "COUNT": "2"}
    assert updated["RevisionId"] != created["RevisionId"]

    assert aws("tag-resource", "--resource", created["FunctionArn"], "--tags", "team=kappa,env=ci") is None
    tags = aws("list-tags", "--resource", created["FunctionArn"])
    assert tags["Tags"] == {"team": "kappa", "env": "ci"}

    deleted = aws("delete-function", "--function-name", name)
    # Newer CLI models bind DeleteFunction's HTTP status to an output member.
    assert deleted in (None, {"StatusCode": 204}), deleted
    proc = aws("get-function", "--function-name", name, check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr, proc.stderr


def test_cli_reports_conflict_and_validation_errors(aws, tmp_path):
    name = h.new_name("cli-err")
    zip_path = tmp_path / "f.zip"
    zip_path.write_bytes(h.handler_zip())
    args = ["create-function", "--function-name", name, "--runtime", "python3.12",
            "--role", h.ROLE, "--handler", "app.handler", "--zip-file", f"fileb://{zip_path}"]
    aws(*args)
    proc = aws(*args, check=False)
    assert proc.returncode != 0
    assert "ResourceConflictException" in proc.stderr and f"Function already exist: {name}" in proc.stderr, proc.stderr
    bad_runtime = list(args)
    bad_runtime[2] = h.new_name("cli-rt")
    bad_runtime[4] = "cobol"
    proc = aws(*bad_runtime, check=False)
    assert proc.returncode != 0
    assert "InvalidParameterValueException" in proc.stderr, proc.stderr
