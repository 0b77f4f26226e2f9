"""Durability: SIGKILL during creates, clean shutdown on SIGTERM/SIGINT, data-dir lock.

Set KAPPA_CRASH_SEED to replay a run; KAPPA_CRASH_ROUNDS to change the number of rounds."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from botocore.exceptions import ClientError

import kappa_helpers as h

ROUNDS = int(os.environ.get("KAPPA_CRASH_ROUNDS", "4"))
FUNCTIONS_PER_ROUND = 30
WRITERS = 2


class Writer(threading.Thread):
    """Creates functions one after the other until told to stop or the server goes away."""

    def __init__(self, url: str, names: list[str], rng: random.Random):
        super().__init__(daemon=True)
        self.client = h.make_client(url, read_timeout=15, connect_timeout=2)
        self.names = names
        self.zips = {n: h.build_zip({"app.py": h.HANDLER_SOURCE, "blob.bin": rng.randbytes(rng.randint(64, 512) * 1024)},
                                    compression=0) for n in names}
        self.acked: dict[str, dict] = {}
        self.attempted: list[str] = []
        self.unexpected: list[str] = []
        self.lock = threading.Lock()

    def run(self):
        for name in self.names:
            with self.lock:
                self.attempted.append(name)
            try:
                resp = self.client.create_function(**h.create_params(name, self.zips[name]))
            except ClientError as exc:
                self.unexpected.append(f"{name}: {exc}")
                return
            except Exception:  # connection refused/reset: the server was killed
                return
            if resp["ResponseMetadata"]["HTTPStatusCode"] == 201:
                with self.lock:
                    self.acked[name] = h.strip_meta(resp)
            else:
                self.unexpected.append(f"{name}: HTTP {resp['ResponseMetadata']['HTTPStatusCode']}")
                return


def verify_complete(client, name: str) -> dict:
    """GetFunction works and the downloadable code matches CodeSha256/CodeSize."""
    got = client.get_function(FunctionName=name)
    cfg = got["Configuration"]
    data = h.http_get_bytes(got["Code"]["Location"])
    assert h.code_sha256(data) == cfg["CodeSha256"], f"{name}: stored code does not match CodeSha256"
    assert len(data) == cfg["CodeSize"], f"{name}: stored code size {len(data)} != CodeSize {cfg['CodeSize']}"
    assert cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful", cfg
    return cfg


def test_sigkill_during_creates_loses_no_acknowledged_function(server_factory, tmp_path_factory):
    seed = int(os.environ.get("KAPPA_CRASH_SEED", str(time.time_ns() % 2**32)))
    rng = random.Random(seed)
    print(f"crash test seed: {seed}")
    data_dir = tmp_path_factory.mktemp("crash-data")
    durable: dict[str, dict] = {}  # every function ever acknowledged, across rounds
    srv = server_factory(data_dir=data_dir)

    for round_no in range(ROUNDS):
        per_writer = FUNCTIONS_PER_ROUND // WRITERS
        writers = [
            Writer(srv.url, [f"crash-r{round_no}-w{w}-{i:02d}" for i in range(per_writer)], rng)
            for w in range(WRITERS)
        ]
        kill_after = rng.randint(1, FUNCTIONS_PER_ROUND - 3)
        for w in writers:
            w.start()

        def acked_count():
            return sum(len(w.acked) for w in writers)

        h.wait_until(60, lambda: acked_count() >= kill_after or not any(w.is_alive() for w in writers),
                     interval=0.002, desc=f"{kill_after} acknowledged creates")
        srv.kill()
        for w in writers:
            w.join(timeout=30)
            assert not w.is_alive(), "writer thread hung after the server was killed"
            assert not w.unexpected, f"round {round_no}: unexpected errors before the kill: {w.unexpected}"
        acked = {n: cfg for w in writers for n, cfg in w.acked.items()}
        in_flight = [n for w in writers for n in w.attempted if n not in w.acked]
        assert len(acked) >= kill_after, (len(acked), kill_after)
        print(f"round {round_no}: killed after {len(acked)} acknowledged creates, {len(in_flight)} in flight")
        durable.update(acked)

        # Restart on the same data dir (the lock of the killed process must not block it).
        srv = server_factory(data_dir=data_dir)
        client = srv.client()

        listed = {f["FunctionName"]: f for f in h.list_all_functions(client)}
        missing = sorted(set(durable) - set(listed))
        assert not missing, f"round {round_no} (seed {seed}): acknowledged functions lost after SIGKILL: {missing}"
        for name, cfg in durable.items():
            now = verify_complete(client, name)
            assert now["CodeSha256"] == cfg["CodeSha256"], name
            assert now["RevisionId"] == cfg["RevisionId"], name
            assert now["CodeSize"] == cfg["CodeSize"], name
        unexpected = set(listed) - set(durable) - set(in_flight)
        assert not unexpected, f"functions that were never requested appeared: {unexpected}"
        # Creates that were in flight are either fully there or fully absent.
        for name in in_flight:
            if name in listed:
                verify_complete(client, name)
                durable[name] = h.strip_meta(client.get_function_configuration(FunctionName=name))
            else:
                h.api_error(client, lambda: client.get_function(FunctionName=name), 404, "ResourceNotFoundException")
                # The name is not stuck half-created: it can be created now.
                zip_bytes = h.unique_zip()
                cfg = h.create_function(client, name, zip_bytes)
                assert cfg["CodeSha256"] == h.code_sha256(zip_bytes)
                durable[name] = cfg
        # Every listed function is complete.
        for name in listed:
            verify_complete(client, name)

    srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown_exits_zero_and_restarts(server_factory, tmp_path_factory, sig):
    data_dir = tmp_path_factory.mktemp("graceful-data")
    srv = server_factory(data_dir=data_dir)
    client = srv.client()
    zip_bytes = h.unique_zip()
    created = h.create_function(client, "survivor", zip_bytes, Tags={"k": "v"})
    code = srv.stop(sig, timeout=15)
    assert code == 0, f"exit code after {sig.name}: {code}; log:\n{srv.log_text()[-3000:]}"

    again = server_factory(data_dir=data_dir)
    client = again.client()
    cfg = verify_complete(client, "survivor")
    assert cfg["CodeSha256"] == created["CodeSha256"] == h.code_sha256(zip_bytes)
    assert cfg["RevisionId"] == created["RevisionId"]
    assert client.list_tags(Resource=created["FunctionArn"])["Tags"] == {"k": "v"}
    assert again.stop() == 0


def test_second_server_on_same_data_dir_is_refused(server_factory, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("locked-data")
    first = server_factory(data_dir=data_dir)
    h.create_function(first.client(), "held")
    second = server_factory(data_dir=data_dir, start=False)  # different free port
    proc = second.spawn()
    h.wait_until(15, lambda: proc.poll() is not None, desc="second server to exit")
    assert proc.returncode != 0, "second server on the same data dir did not fail"
    log = second.log_text()
    assert "in use" in log, f"second server's output does not say 'in use':\n{log}"
    assert "address already in use" not in log.lower(), f"refused for the port, not the data dir:\n{log}"
    # The first server is unaffected.
    assert first.healthy()
    assert first.client().get_function(FunctionName="held")["Configuration"]["FunctionName"] == "held"
    assert first.stop() == 0
    # Once the first is gone, the data dir can be opened again.
    third = server_factory(data_dir=data_dir)
    assert third.client().get_function(FunctionName="held")["Configuration"]["FunctionName"] == "held"


@pytest.mark.extra
def test_sigkill_during_updates_and_deletes_keeps_acknowledged_state(server_factory, tmp_path_factory):
    """Acknowledged UpdateFunctionCode/DeleteFunction survive SIGKILL; in-flight ones are all-or-nothing."""
    seed = int(os.environ.get("KAPPA_CRASH_SEED", str(time.time_ns() % 2**32)))
    rng = random.Random(seed)
    print(f"update/delete crash seed: {seed}")
    data_dir = tmp_path_factory.mktemp("crash-update-data")
    srv = server_factory(data_dir=data_dir)
    client = srv.client()
    names = [f"upd-{i:02d}" for i in range(20)]
    state: dict[str, dict | None] = {n: h.create_function(client, n, h.unique_zip()) for n in names}

    ops = []  # (name, kind, zip or None)
    for _ in range(60):
        name = rng.choice(names)
        ops.append((name, "delete" if rng.random() < 0.15 else "update",
                    h.build_zip({"app.py": h.HANDLER_SOURCE, "b.bin": rng.randbytes(rng.randint(16, 256) * 1024)},
                                compression=0)))
    acked: list[tuple[str, str, dict | None]] = []
    pending: dict[str, tuple[str, bytes]] = {}
    errors: list[str] = []
    op_client = h.make_client(srv.url, read_timeout=15, connect_timeout=2)

    def run():
        for name, kind, zip_bytes in ops:
            pending.clear()
            pending[name] = (kind, zip_bytes)
            try:
                if kind == "update":
                    resp = op_client.update_function_code(FunctionName=name, ZipFile=zip_bytes)
                    acked.append((name, kind, h.strip_meta(resp)))
                else:
                    op_client.delete_function(FunctionName=name)
                    acked.append((name, kind, None))
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    errors.append(f"{kind} {name}: {exc}")
                    return
                acked.append((name, "absent", None))
            except Exception:
                return
        pending.clear()

    worker = threading.Thread(target=run, daemon=True)
    kill_after = rng.randint(5, len(ops) - 5)
    worker.start()
    h.wait_until(60, lambda: len(acked) >= kill_after or not worker.is_alive(), interval=0.002,
                 desc=f"{kill_after} acknowledged operations")
    srv.kill()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert not errors, errors
    print(f"killed after {len(acked)} acknowledged operations; in flight: {list(pending.items())[:1] and list(pending)}")
    for name, kind, cfg in acked:
        if kind == "update":
            state[name] = cfg
        elif kind == "delete":
            state[name] = None

    srv = server_factory(data_dir=data_dir)
    client = srv.client()
    listed = {f["FunctionName"] for f in h.list_all_functions(client)}
    for name, expected in state.items():
        in_flight = pending.get(name)
        if in_flight is None:
            if expected is None:
                assert name not in listed, f"{name}: acknowledged delete undone by SIGKILL (seed {seed})"
                h.api_error(client, lambda: client.get_function(FunctionName=name), 404, "ResourceNotFoundException")
            else:
                cfg = verify_complete(client, name)
                assert (cfg["CodeSha256"], cfg["RevisionId"]) == (expected["CodeSha256"], expected["RevisionId"]), (
                    f"{name}: acknowledged state lost by SIGKILL (seed {seed})")
        else:
            kind, zip_bytes = in_flight
            if name not in listed:
                assert kind == "delete" or expected is None, f"{name} vanished during an in-flight update"
                continue
            cfg = verify_complete(client, name)
            allowed = {h.code_sha256(zip_bytes)} if kind == "update" else set()
            if expected is not None:
                allowed.add(expected["CodeSha256"])
            assert cfg["CodeSha256"] in allowed, f"{name}: half-applied in-flight {kind}"
    srv.stop()
