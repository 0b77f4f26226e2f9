"""/tmp capped at the function's EphemeralStorage and stored on disk, as on Lambda (issue 7).

Each environment's /tmp is an ext4 volume of its own (a sparse image under
<data dir>/environments/, attached to a loop device, mounted and bound at /tmp), so a function can
fill exactly its EphemeralStorage whatever its MemorySize, gets ENOSPC just beyond it, and leaves
no mount, loop device or image behind when its environment ends, when the server stops, or after
the server is killed and restarted. The probe reports from inside; the host side is read from
/proc/self/mountinfo and /sys/block/loop*/loop/backing_file.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import kappa_helpers as h

MIB = 1 << 20
# A volume of EphemeralStorage MiB accepts at least that much file data and at most this much
# more (crates/runtime/src/ephemeral_storage/volume.rs, MAX_SLACK_MIB).
MAX_SLACK_MIB = 2

PROBE_SOURCE = r'''
import errno
import os


def fill(event):
    """Write exactly `mb` MiB (fsynced) to /tmp/<name>; keep the file only if asked."""
    path = "/tmp/" + event.get("name", "fill")
    limit = event["mb"] << 20
    chunk = b"\0" * (4 << 20)
    written, error = 0, None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while written < limit:
            written += os.write(fd, chunk[: min(len(chunk), limit - written)])
        os.fsync(fd)
    except OSError as exc:
        error = errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        os.close(fd)
        if not event.get("keep"):
            os.unlink(path)
    return {"written": written, "error": error}


def describe(event):
    st = os.statvfs("/tmp")
    info = os.stat("/tmp")
    device = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/tmp":
                device = fields[fields.index("-") + 2]
    return {
        "size": st.f_blocks * st.f_frsize,
        "available": st.f_bavail * st.f_frsize,
        "device": device,
        "uid": info.st_uid,
        "runtime_uid": os.getuid(),
        "mode": oct(info.st_mode & 0o7777),
        "files": sorted(os.listdir("/tmp")),
        "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
    }


def hang(event):
    with open("/tmp/" + event["name"], "w") as f:
        f.write("kept")
    import time
    time.sleep(60)


def mounts(event):
    """Mount points of this sandbox's namespace below a path (copies of the host's mounts)."""
    with open("/proc/self/mountinfo") as f:
        return {"mounts": [line.split()[4] for line in f if line.split()[4].startswith(event["below"])]}


OPS = {"fill": fill, "describe": describe, "hang": hang, "mounts": mounts}


def handler(event, context):
    return OPS[event["op"]](event)
'''

PROBE_ZIP = h.build_zip({"app.py": PROBE_SOURCE.encode()})


def make_probe(client, prefix: str, **overrides) -> str:
    name = h.new_name(prefix)
    params = {"Timeout": 60, "MemorySize": 128}
    params.update(overrides)
    h.create_function(client, name, PROBE_ZIP, **params)
    return name


def call(client, function: str, /, **event) -> dict:
    return h.invoke_ok(client, function, event).json()


# ---- the host's view --------------------------------------------------------------------------


def environments_dir(data_dir: Path) -> Path:
    return Path(os.path.realpath(data_dir)) / "environments"


def host_mounts(data_dir: Path) -> set[str]:
    """Mount points under the data dir's environments/."""
    root = str(environments_dir(data_dir)) + "/"
    found = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(root):
            found.add(point)
    return found


def host_loops(data_dir: Path) -> dict[str, str]:
    """Loop device -> backing file, for backing files under the data dir's environments/."""
    root = str(environments_dir(data_dir)) + "/"
    found = {}
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            path = backing.read_text().strip().removesuffix(" (deleted)")
        except OSError:
            continue
        if path.startswith(root):
            found["/dev/" + backing.parent.parent.name] = path
    return found


def host_images(data_dir: Path) -> set[str]:
    directory = environments_dir(data_dir)
    return {str(p) for p in directory.glob("*.img")} if directory.is_dir() else set()


def backing_file(device: str) -> str:
    return Path(f"/sys/block/{Path(device).name}/loop/backing_file").read_text().strip()


def volume_gone(data_dir: Path, image: str) -> bool:
    """The volume whose image was `image`: unmounted, detached, deleted."""
    mount = image.removesuffix(".img")
    return (mount not in host_mounts(data_dir) and image not in host_loops(data_dir).values()
            and not os.path.exists(image))


def nothing_left(data_dir: Path) -> bool:
    return not host_mounts(data_dir) and not host_loops(data_dir) and not host_images(data_dir)


def leftovers(data_dir: Path) -> str:
    return f"mounts {host_mounts(data_dir)}, loops {host_loops(data_dir)}, images {host_images(data_dir)}"


@pytest.fixture(scope="module")
def neighbour(client) -> str:
    name = h.new_name("tmp-neighbour")
    h.create_function(client, name, h.handler_zip(b"tmp-neighbour"), Timeout=10)
    h.invoke_ok(client, name, {"warm": True})
    return name


def assert_neighbour_healthy(server, client, neighbour: str) -> None:
    assert server.alive() and server.healthy(), f"the server is unwell; log:\n{server.log_text()[-3000:]}"
    result = h.invoke_ok(client, neighbour, {"ping": 1})
    assert result.json() == {"ping": 1}, result.describe()
    assert result.elapsed < 5, f"the neighbour took {result.elapsed:.2f}s"


# ---- the cap ----------------------------------------------------------------------------------


def test_tmp_is_a_volume_of_the_functions_size(client, server):
    name = make_probe(client, "tmp-describe")
    seen = call(client, name, op="describe")
    assert 512 * MIB <= seen["available"] <= (512 + MAX_SLACK_MIB) * MIB, seen
    assert seen["files"] == [], seen
    # The runtime user's own, private, as Lambda's.
    assert seen["mode"] == "0o700" and seen["uid"] == seen["runtime_uid"], seen
    assert seen["device"] and seen["device"].startswith("/dev/loop"), seen
    image = backing_file(seen["device"])
    assert image.startswith(str(environments_dir(server.data_dir)) + "/") and image.endswith(".img"), image
    # Sparse: the empty volume takes almost no disk.
    assert os.stat(image).st_blocks * 512 < 8 * MIB, os.stat(image)


def test_128_mb_function_fills_its_512_mb_tmp(server, client, neighbour):
    """Writing /tmp is not charged as memory that can OOM the function: a 128 MB function writes
    exactly 512 MiB, then gets ENOSPC a few MiB beyond, and the server and a neighbour go on."""
    name = make_probe(client, "tmp-fill-512")
    full = h.invoke_ok(client, name, {"op": "fill", "mb": 512, "keep": True, "name": "big"})
    assert full.json() == {"written": 512 * MIB, "error": None}, full.describe()
    assert int(full.report()["used"]) <= 128, full.log
    # Full: one byte more than the slack does not fit.
    over = call(client, name, op="fill", mb=MAX_SLACK_MIB + 1, name="more")
    assert over["error"] == "ENOSPC", over
    assert over["written"] <= MAX_SLACK_MIB * MIB, over
    assert_neighbour_healthy(server, client, neighbour)
    # From scratch, a few MiB over the cap in one file fails too.
    fresh = make_probe(client, "tmp-fill-over")
    result = call(client, fresh, op="fill", mb=512 + MAX_SLACK_MIB + 1)
    assert result["error"] == "ENOSPC", result
    assert 512 * MIB <= result["written"] <= (512 + MAX_SLACK_MIB) * MIB, result
    assert_neighbour_healthy(server, client, neighbour)


def test_ephemeral_storage_of_1024_mb_holds_1024_mb(client):
    name = make_probe(client, "tmp-fill-1024", EphemeralStorage={"Size": 1024})
    seen = call(client, name, op="describe")
    assert 1024 * MIB <= seen["available"] <= (1024 + MAX_SLACK_MIB) * MIB, seen
    assert call(client, name, op="fill", mb=1024) == {"written": 1024 * MIB, "error": None}
    result = call(client, name, op="fill", mb=1024 + MAX_SLACK_MIB + 1)
    assert result["error"] == "ENOSPC", result


def test_tmp_and_its_cap_survive_a_timeout_reset(client):
    name = make_probe(client, "tmp-reset", Timeout=2)
    before = call(client, name, op="describe")
    hung = h.invoke(client, name, {"op": "hang", "name": "marker"})
    assert hung.function_error == "Unhandled" and hung.json()["errorType"] == "Sandbox.Timedout", hung.describe()
    after = call(client, name, op="describe")
    assert after["stream"] != before["stream"], "the reset should have started a new environment"
    assert after["files"] == ["marker"], after
    assert after["device"] == before["device"], (before, after)
    assert 512 * MIB <= after["available"] <= (512 + MAX_SLACK_MIB) * MIB, after


# ---- cleanup ----------------------------------------------------------------------------------


def test_nothing_is_left_after_environments_end_and_the_server_stops(server_factory, tmp_path):
    srv = server_factory(data_dir=tmp_path / "data", env={"KAPPA_KEEP_ALIVE_SECS": "1"})
    client = srv.client()
    name = make_probe(client, "tmp-cleanup")
    seen = call(client, name, op="describe")
    image = backing_file(seen["device"])
    assert image in host_images(srv.data_dir)
    # The idle environment is shut down after the keep-alive; its volume goes with it.
    h.wait_until(15, lambda: volume_gone(srv.data_dir, image), interval=0.1,
                 desc=f"the ended environment's volume {image} to go ({leftovers(srv.data_dir)})")
    assert srv.stop(signal.SIGTERM) == 0, srv.log_text()[-3000:]
    h.wait_until(10, lambda: nothing_left(srv.data_dir), interval=0.1,
                 desc=f"nothing to be left after the stop ({leftovers(srv.data_dir)})")


def test_a_volume_is_released_while_environments_started_before_it_live(server_factory, tmp_path):
    """A sandbox's mount namespace starts as a copy of the host's, ready volumes included, and
    its pivot_root detaches them all: an older environment holds no copy of a later one's volume,
    so a volume's loop device goes when its own environment ends."""
    srv = server_factory(data_dir=tmp_path / "data")
    client = srv.client()
    older = make_probe(client, "tmp-older")
    later = make_probe(client, "tmp-later")
    ready_before = host_mounts(srv.data_dir)
    older_seen = call(client, older, op="describe")
    later_seen = call(client, later, op="describe")
    image = backing_file(later_seen["device"])
    assert image.removesuffix(".img") in ready_before, "the later environment should take a volume that was ready"
    below = str(environments_dir(srv.data_dir))
    assert call(client, older, op="mounts", below=below)["mounts"] == [], \
        "the older sandbox sees host mounts below the data dir"
    # End the later environment (a new revision retires it), keep the older one.
    client.update_function_configuration(FunctionName=later, Description="retire")
    h.wait_until(15, lambda: volume_gone(srv.data_dir, image), interval=0.1,
                 desc=f"the later environment's volume {image} to go ({leftovers(srv.data_dir)})")
    assert call(client, older, op="describe")["stream"] == older_seen["stream"], "the older environment was replaced"


def test_restart_after_sigkill_releases_the_previous_runs_volumes(server_factory, tmp_path):
    srv = server_factory(data_dir=tmp_path / "data")
    client = srv.client()
    idle = make_probe(client, "tmp-killed-idle")
    reset = make_probe(client, "tmp-killed-reset", Timeout=2)
    images = {backing_file(call(client, idle, op="describe")["device"])}
    images.add(backing_file(call(client, reset, op="describe")["device"]))
    h.invoke(client, reset, {"op": "hang", "name": "marker"})  # its /tmp is kept for a reset
    before = (host_mounts(srv.data_dir), host_loops(srv.data_dir), host_images(srv.data_dir))
    assert images <= before[2], (images, before)
    srv.kill()
    assert host_mounts(srv.data_dir) == before[0], "a SIGKILL cannot have cleaned up"

    srv.start()
    old_mounts, _, old_images = before

    def released():
        return not (host_mounts(srv.data_dir) & old_mounts
                    or set(host_loops(srv.data_dir).values()) & old_images
                    or host_images(srv.data_dir) & old_images)

    h.wait_until(10, released, interval=0.1,
                 desc=f"the killed run's volumes to be released ({leftovers(srv.data_dir)})")
    # The restarted server runs functions on fresh volumes.
    client = srv.client()
    assert call(client, idle, op="describe")["files"] == []
    assert srv.stop(signal.SIGTERM) == 0, srv.log_text()[-3000:]
    h.wait_until(10, lambda: nothing_left(srv.data_dir), interval=0.1,
                 desc=f"nothing to be left after the stop ({leftovers(srv.data_dir)})")


def test_unsafe_none_falls_back_to_a_plain_directory(server_factory, tmp_path):
    port = h.free_port()
    data_dir = tmp_path / "data"
    srv = server_factory(data_dir=data_dir, port=port,
                         args=["--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
                               "--isolation", "unsafe-none"])
    client = srv.client()
    name = h.new_name("tmp-unsafe")
    h.create_function(client, name, h.handler_zip(b"tmp-unsafe"))
    h.invoke_ok(client, name, {"x": 1})
    assert not host_mounts(data_dir) and not host_loops(data_dir)
    warnings = [line for line in srv.log_text().splitlines() if "NOT capped at EphemeralStorage" in line]
    assert len(warnings) == 1, srv.log_text()[-3000:]
