"""Per-invoke overhead of runtimes/nodejs/bootstrap.mjs, compared with a minimal Node loop.

    .venv/bin/python tests/runtimes/nodejs/bench/bench_overhead.py [--invokes N]

1. Fake Runtime API (in-process): time from the /next reply being written to the /response
   body being read, for a no-op async handler. This is the runtime's own cost per invoke,
   plus the Python server's parsing (the same for both runtimes).
2. RIE: client-observed latency of a synchronous invoke through AWS's emulator.

Both are run for bootstrap.mjs and for bench/minimal_runtime.mjs (GET /next, call handler,
POST /response; no Lambda semantics), so the difference is what Lambda compatibility costs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nodejs_runtime_helpers as h  # noqa: E402

BENCH = Path(__file__).resolve().parent
RUNTIMES = {
    "bootstrap.mjs": h.BOOTSTRAP,
    "minimal loop": BENCH / "minimal_runtime.mjs",
}


def summarize(samples_s: list[float]) -> str:
    us = sorted(x * 1e6 for x in samples_s)
    q = lambda p: us[min(len(us) - 1, int(p * len(us)))]  # noqa: E731
    return f"median {statistics.median(us):7.0f} us   p90 {q(0.90):7.0f} us   p99 {q(0.99):7.0f} us"


def bench_fake_api(node: str, script: Path, invokes: int, warmup: int) -> list[float]:
    api = h.FakeRuntimeApi()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "out.log"
        import subprocess

        env = h.base_env(AWS_LAMBDA_RUNTIME_API=api.address, _HANDLER="noop.handler", LAMBDA_TASK_ROOT=str(BENCH))
        with open(log, "wb") as out:
            proc = subprocess.Popen([node, str(script)], cwd=BENCH, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                samples = []
                for i in range(warmup + invokes):
                    rid = api.push({"i": i})
                    rec = api.result_for(rid)
                    if i >= warmup:
                        samples.append(rec.received_at - api.next_sent_at[rid])
                    with api._cond:
                        api.requests.clear()
                return samples
            finally:
                proc.kill()
                proc.wait()
                api.close()


def bench_rie(rie: Path, node: str, script: Path, invokes: int, warmup: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        fn = h.RieFunction(rie, node, BENCH, "noop.handler", Path(tmp) / "rie.log",
                           env={"KAPPA_RIE_LOG_LEVEL": "error", "LOG_LEVEL": "error"}, bootstrap=script)
        fn.start()
        try:
            samples = []
            for i in range(warmup + invokes):
                t0 = time.perf_counter()
                r = fn.invoke({"i": i})
                t1 = time.perf_counter()
                assert r.status == 200 and r.body == b"null", (r.status, r.body)
                if i >= warmup:
                    samples.append(t1 - t0)
            return samples
        finally:
            fn.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invokes", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    args = ap.parse_args()
    node = h.find_node()
    if not node:
        sys.exit("node not found")
    import subprocess

    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# {time.strftime('%Y-%m-%d')}  {platform.node()}  {platform.processor() or platform.machine()}  "
          f"node {node_version}  invokes={args.invokes} warmup={args.warmup}")

    print("\n## fake Runtime API: /next reply written -> /response read (no-op handler)")
    for name, script in RUNTIMES.items():
        print(f"{name:15s} {summarize(bench_fake_api(node, script, args.invokes, args.warmup))}")

    rie, reason = h.find_rie()
    if rie is None:
        print(f"\n(RIE benchmark skipped: {reason})")
        return
    n = max(200, args.invokes // 3)
    print(f"\n## RIE: client-observed invoke latency (no-op handler, {n} invokes)")
    for name, script in RUNTIMES.items():
        print(f"{name:15s} {summarize(bench_rie(rie, node, script, n, args.warmup // 3))}")


if __name__ == "__main__":
    main()
