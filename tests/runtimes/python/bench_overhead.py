"""Benchmark: what Kappa's Python runtime costs per invoke and per cold start.

    .venv/bin/python tests/runtimes/python/bench_overhead.py [--invokes 3000] [--starts 30]

Per invoke: sequential invocations of an echo handler through the RIE on loopback, timed
by the caller, for three runtimes: a bare-socket loop that does nothing but relay the
event (the floor: RIE plus client cost), Kappa's bootstrap, and, when
KAPPA_AWSLAMBDARIC_PYTHON names an interpreter with awslambdaric, AWS's runtime client.
The runtime's own overhead is its latency minus the floor's.

Cold start: from process start to the runtime's first GET /next (handler module imported),
against the fake Runtime API.
"""

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_runtime_api import FakeRuntimeApi  # noqa: E402
from runtime_harness import (BOOTSTRAP, FUNCTIONS, RieRuntime, clean_env,  # noqa: E402
                             find_rie, wait_until)

BARE_RUNTIME = r'''
import os, socket
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
sock = socket.create_connection((host, int(port)))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
reader = sock.makefile("rb")

def read_response():
    reader.readline()
    headers = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers, reader.read(int(headers.get(b"content-length", 0)))

while True:
    sock.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
    headers, body = read_response()
    request_id = headers[b"lambda-runtime-aws-request-id"]
    sock.sendall(b"POST /2018-06-01/runtime/invocation/" + request_id + b"/response HTTP/1.1\r\n"
                 b"Host: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    read_response()
'''


def invoke_latencies(rie_bin, command, invokes, warmup=200):
    rie = RieRuntime(rie_bin, "app.echo", runtime_command=command)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", rie.port)
        payload = b'{"hello": "world", "numbers": [1, 2, 3]}'
        latencies = []
        for index in range(warmup + invokes):
            start = time.perf_counter()
            conn.request("POST", "/2015-03-31/functions/function/invocations", payload)
            response = conn.getresponse()
            body = response.read()
            if index >= warmup:
                latencies.append((time.perf_counter() - start) * 1e6)
        assert (response.status, body) == (200, payload), (response.status, body)
        conn.close()
    finally:
        rie.stop()
    return sorted(latencies)


def cold_starts(command, starts):
    times = []
    for _ in range(starts):
        api = FakeRuntimeApi()
        env = clean_env({"AWS_LAMBDA_RUNTIME_API": api.address, "_HANDLER": "app.echo",
                         "LAMBDA_TASK_ROOT": FUNCTIONS})
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=FUNCTIONS, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: any(r.path.endswith("/invocation/next") for r in api.requests),
                   interval=0.0005, message="the first GET /next")
        times.append((time.perf_counter() - start) * 1000)
        process.kill()
        process.wait()
        api.close()
    return sorted(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invokes", type=int, default=3000)
    parser.add_argument("--starts", type=int, default=30)
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for the bare loop and Kappa's runtime")
    args = parser.parse_args()
    rie_bin, why_not = find_rie()
    if rie_bin is None:
        sys.exit(why_not)

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as bare:
        bare.write(BARE_RUNTIME)
    runtimes = [("bare socket loop (floor)", [args.python, bare.name]),
                ("kappa bootstrap", [args.python, BOOTSTRAP])]
    ric_python = os.environ.get("KAPPA_AWSLAMBDARIC_PYTHON")
    if ric_python:
        runtimes.append(("awslambdaric", [ric_python, "-m", "awslambdaric", "app.echo"]))

    print("python: %s" % subprocess.run([args.python, "-VV"], capture_output=True,
                                        text=True).stdout.strip())
    print("per invoke, %d sequential invokes through the RIE (microseconds):" % args.invokes)
    floor = None
    try:
        for name, command in runtimes:
            lat = invoke_latencies(rie_bin, command, args.invokes)
            p50 = lat[len(lat) // 2]
            floor = p50 if floor is None else floor
            print("  %-26s p50 %5.0f  p90 %5.0f  p99 %5.0f  mean %5.0f  (p50 over floor: %+4.0f)"
                  % (name, p50, lat[int(len(lat) * 0.9)], lat[int(len(lat) * 0.99)],
                     statistics.mean(lat), p50 - floor))
        print("cold start, process start to first GET /next, %d starts (milliseconds):"
              % args.starts)
        for name, command in runtimes[1:]:
            times = cold_starts(command, args.starts)
            print("  %-26s median %5.1f  min %5.1f" % (name, statistics.median(times), times[0]))
    finally:
        os.unlink(bare.name)


if __name__ == "__main__":
    main()
