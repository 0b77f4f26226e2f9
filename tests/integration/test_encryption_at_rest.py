"""Environment variables are sealed at rest: no file under the data directory (the SQLite
database and its -wal/-shm files, code blobs, extracted code, the async queue, the log store)
and no line of the server's own log holds a variable's value, while the API and the function
still see them in plaintext, across restarts.

What Lambda encrypts at rest is the function's configuration. What a function prints goes to
its log group (CloudWatch Logs on AWS, the log store here) as the function wrote it: a function
that prints a secret puts it in its own logs on Lambda too. So the function that prints its
variable gets a secret of its own, which the test expects to find through the Logs API and
leaves out of the byte search; every other secret must be found nowhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

import kappa_async as ka
import kappa_helpers as h

HANDLER = b"""
import hashlib, os

def handler(event, context):
    secret = os.environ.get("SECRET", "")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    print("DIGEST", digest)
    if event.get("print"):
        print("PRINTED", os.environ.get("PRINTED_SECRET", ""))
    return {"digest": digest, "keys": sorted(k for k in os.environ if k.endswith("SECRET"))}
"""

KMS_KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def new_secret() -> str:
    return f"kappa-secret-{uuid.uuid4().hex}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def files_holding(root: Path, needles: list[bytes], extra: list[Path] = ()) -> list[tuple[str, str]]:
    """(file, needle) for every file under `root` (and in `extra`) whose bytes contain a needle."""
    found = []
    paths = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()] + list(extra)
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for needle in needles:
            if needle in data:
                found.append((str(path), needle.decode()))
    return found


def log_messages(server: h.KappaServer, group: str) -> list[str]:
    logs = h.logs_client(server.url)
    events = logs.filter_log_events(logGroupName=group)["events"]
    return [e["message"] for e in events]


def create(client, name: str, variables: dict[str, str], **extra) -> dict:
    return h.create_function(
        client,
        name,
        h.build_zip({"app.py": HANDLER}),
        Environment={"Variables": variables},
        Timeout=30,
        **extra,
    )


@pytest.fixture
def isolated(server_factory):
    """A server of its own, with a short async retry delay, logging at debug level so that every
    tracing call of Kappa (and its libraries') is exercised by the search of its log."""
    return server_factory(env=ka.async_env(KAPPA_LOG="debug"))


def test_variables_are_nowhere_on_disk_and_survive_a_restart(isolated):
    server = isolated
    client = server.client()
    first, updated, other, printed = new_secret(), new_secret(), new_secret(), new_secret()
    name = h.new_name("sealed")
    other_name = h.new_name("sealed-other")
    printer = h.new_name("sealed-printer")

    created = create(client, name, {"SECRET": first, "PLAIN": "visible"}, KMSKeyArn=KMS_KEY_ARN)
    assert created["Environment"] == {"Variables": {"SECRET": first, "PLAIN": "visible"}}
    assert created["KMSKeyArn"] == KMS_KEY_ARN
    create(client, other_name, {"SECRET": other})
    create(client, printer, {"SECRET": other, "PRINTED_SECRET": printed})

    # An update replaces the sealed variables; the old value must not linger either.
    resp = client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"SECRET": updated, "PLAIN": "visible"}}
    )
    assert resp["Environment"]["Variables"]["SECRET"] == updated
    config = client.get_function_configuration(FunctionName=name)
    assert config["Environment"] == {"Variables": {"SECRET": updated, "PLAIN": "visible"}}
    assert config["KMSKeyArn"] == KMS_KEY_ARN
    assert client.get_function(FunctionName=name)["Configuration"]["Environment"]["Variables"]["SECRET"] == updated
    listed = {f["FunctionName"]: f for f in h.list_all_functions(client)}
    assert listed[other_name]["Environment"]["Variables"]["SECRET"] == other

    # A published version is a second stored copy of the configuration: sealed the same way.
    published = client.publish_version(FunctionName=name)
    assert published["Environment"]["Variables"]["SECRET"] == updated
    version = published["Version"]

    # Synchronous invokes: the function sees the plaintext.
    assert h.invoke_ok(client, name).json()["digest"] == digest(updated)
    assert h.invoke_ok(client, other_name).json()["digest"] == digest(other)
    tail = h.invoke_ok(client, printer, {"print": True}).log
    assert f"PRINTED {printed}" in tail

    # Asynchronous invokes go through the durable queue.
    for function in (name, other_name):
        resp = client.invoke(FunctionName=function, InvocationType="Event", Payload=b'{"async": true}')
        assert resp["StatusCode"] == 202
    ka.wait_queue_empty(server)
    ka.wait_for(30, lambda: sum(f"DIGEST {digest(updated)}" in m for m in log_messages(server, f"/aws/lambda/{name}")) >= 2,
                desc="the async invocation's log line")

    # The printing function's own output is stored as it printed it (as on Lambda).
    ka.wait_for(30, lambda: any(printed in m for m in log_messages(server, f"/aws/lambda/{printer}")),
                desc="the printed secret in the function's log group")

    assert server.stop() == 0
    secrets = [first, updated, other]
    leaks = files_holding(server.data_dir, [s.encode() for s in secrets], extra=[server.log_path])
    assert not leaks, f"environment variable values found in plaintext: {leaks}"
    # The data key: generated at the first start, 0600, 64 hex digits.
    key_file = server.data_dir / "keys" / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32

    server.start()
    assert h.invoke_ok(client, name).json()["digest"] == digest(updated)
    assert h.invoke_ok(client, f"{name}:{version}").json()["digest"] == digest(updated)
    assert client.get_function_configuration(FunctionName=name, Qualifier=version)["Environment"]["Variables"][
        "SECRET"] == updated
    assert client.get_function_configuration(FunctionName=other_name)["Environment"]["Variables"]["SECRET"] == other


def test_a_corrupt_key_file_stops_the_start_and_is_kept(server_factory):
    server = server_factory()
    client = server.client()
    secret = new_secret()
    name = h.new_name("sealed-key")
    create(client, name, {"SECRET": secret})
    assert server.stop() == 0
    key_file = server.data_dir / "keys" / "data.key"
    good = key_file.read_text()
    key_file.write_text(good[:40])
    proc = server.spawn()
    assert proc.wait(timeout=30) != 0
    log = server.log_text()
    assert "data key file" in log and "truncated or corrupt" in log, log[-2000:]
    assert key_file.read_text() == good[:40], "a corrupt key must never be replaced"

    key_file.write_text(good)
    server.start()
    assert h.invoke_ok(client, name).json()["digest"] == digest(secret)


def test_a_key_file_outside_the_data_dir(server_factory, tmp_path):
    key_file = tmp_path / "kappa-data.key"
    key_file.write_text(os.urandom(32).hex() + "\n")
    key_file.chmod(0o600)
    data_dir = tmp_path / "data"
    server = server_factory(data_dir=data_dir, env={"KAPPA_DATA_KEY_FILE": str(key_file)})
    client = server.client()
    secret = new_secret()
    name = h.new_name("sealed-ext")
    create(client, name, {"SECRET": secret})
    assert server.stop() == 0
    assert not (data_dir / "keys" / "data.key").exists()
    assert not files_holding(data_dir, [secret.encode()])

    # Without the key the server refuses to start rather than serve unreadable variables, and
    # does not leave a fresh, useless key behind.
    server.extra_env = {}
    proc = server.spawn()
    assert proc.wait(timeout=30) != 0
    assert "does not open the environment variables" in server.log_text()
    assert not (data_dir / "keys" / "data.key").exists()

    server.extra_env = {"KAPPA_DATA_KEY_FILE": str(key_file)}
    server.start()
    assert h.invoke_ok(client, name).json()["digest"] == digest(secret)


def test_plaintext_rows_of_an_earlier_release_are_sealed_at_start(server_factory):
    server = server_factory()
    client = server.client()
    secret = new_secret()
    name = h.new_name("sealed-legacy")
    create(client, name, {"SECRET": secret})
    assert server.stop() == 0

    # Turn the row into what a release before sealing wrote: the plain JSON of the version.
    db = sqlite3.connect(server.data_dir / "kappa.db")
    (latest,) = db.execute("SELECT latest FROM functions WHERE name = ?", (name,)).fetchone()
    version = json.loads(latest)
    assert "sealed_environment" in version["settings"] and version["settings"]["environment"] is None
    del version["settings"]["sealed_environment"]
    version["settings"]["environment"] = {"SECRET": secret}
    db.execute("UPDATE functions SET latest = ? WHERE name = ?", (json.dumps(version), name))
    db.commit()
    db.close()
    assert files_holding(server.data_dir, [secret.encode()]), "the test failed to plant a plaintext row"

    server.start()
    assert h.invoke_ok(client, name).json()["digest"] == digest(secret)
    assert client.get_function_configuration(FunctionName=name)["Environment"]["Variables"] == {"SECRET": secret}
    assert server.stop() == 0
    leaks = files_holding(server.data_dir, [secret.encode()])
    assert not leaks, f"plaintext left after sealing the earlier release's rows: {leaks}"
