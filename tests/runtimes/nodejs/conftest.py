"""Fixtures for the Node.js runtime tests.

`rie_function(task, handler, env=None)` starts AWS's Runtime Interface Emulator running
`node runtimes/nodejs/bootstrap.mjs` on a fixture function. `fake_api` / `bootstrap_process`
run the bootstrap against an in-process fake Runtime API instead.

Needs: node (>= 18; KAPPA_NODE_BIN or PATH) and, for the RIE tests, the RIE binary
(KAPPA_RIE_BIN, or the aws-sam-cli wheel: `pip download aws-sam-cli --no-deps -d /tmp/samcli-node`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import nodejs_runtime_helpers as h


@pytest.fixture(scope="session")
def node_bin() -> str:
    node = h.find_node()
    if not node:
        pytest.skip("node not found: install Node.js >= 18 or set KAPPA_NODE_BIN")
    return node


@pytest.fixture(scope="session")
def rie_bin() -> Path:
    rie, reason = h.find_rie()
    if rie is None:
        pytest.skip(reason)
    return rie


@pytest.fixture
def rie_function(rie_bin, node_bin, tmp_path, request):
    """Factory: rie_function("cjs", "index.echo", env={...}) -> started RieFunction."""
    started: list[h.RieFunction] = []

    def make(task: str | Path, handler: str, env: dict[str, str] | None = None,
             bootstrap: Path = h.BOOTSTRAP) -> h.RieFunction:
        task_root = task if isinstance(task, Path) else h.FIXTURES / task
        log = tmp_path / f"rie-{len(started)}.log"
        fn = h.RieFunction(rie_bin, node_bin, task_root, handler, log, env=env, bootstrap=bootstrap)
        started.append(fn)
        return fn.start()

    yield make
    for fn in started:
        fn.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(f"--- RIE log {fn.log_path} ---\n{fn.logs()[-6000:]}")


@pytest.fixture
def fake_api():
    api = h.FakeRuntimeApi()
    yield api
    api.close()


@pytest.fixture
def bootstrap_process(node_bin, fake_api, tmp_path):
    """Factory: bootstrap_process("cjs", "index.echo", env={...}) -> BootstrapProcess."""
    procs: list[h.BootstrapProcess] = []

    def make(task: str, handler: str, env: dict[str, str] | None = None, pass_fds=()):
        p = h.BootstrapProcess(node_bin, fake_api, h.FIXTURES / task, handler,
                               tmp_path / f"bootstrap-{len(procs)}.log", env=env, pass_fds=pass_fds)
        procs.append(p)
        return p

    yield make
    for p in procs:
        p.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
