"""Side by side with AWS's own Python runtime client (awslambdaric) under the same RIE.

Opt-in: set KAPPA_AWSLAMBDARIC_PYTHON to an interpreter that has awslambdaric installed
(``python -m venv /tmp/ric && /tmp/ric/bin/pip install awslambdaric``). Results, error
documents and log lines must match once request ids, timestamps and the runtimes' own
file paths are normalised.
"""

import os
import re
import time

import pytest

from runtime_harness import BOOTSTRAP

PARITY_PYTHON = os.environ.get("KAPPA_AWSLAMBDARIC_PYTHON")
if not PARITY_PYTHON:
    pytest.skip("KAPPA_AWSLAMBDARIC_PYTHON is not set (opt-in comparison with awslambdaric)",
                allow_module_level=True)

CASES = [
    # Not compared: the wording of JSON syntax errors in events (awslambdaric parses with
    # simplejson, whose messages differ slightly from the json module's).
    ("app.echo", [b'{"a": 1, "b": [true, null, 1.5]}', b'"text"', b'{"x": NaN}']),
    ("app.boom", [b"{}"]),
    ("app.key_error", [b"{}"]),
    ("app.return_set", [b"{}"]),
    ("app.return_bytes", [b"{}"]),
    ("app.return_special", [b"{}"]),
    ("app.return_none", [b"{}"]),
    ("app.count", [b"{}", b"{}"]),
    ("pkg.sub.mod.handler", [b"{}"]),
    ("nested/deeper/mod.handler", [b"{}"]),
    ("no_such_module.handler", [b"{}"]),
    ("imports_missing.handler", [b"{}"]),
    ("app.no_such_function", [b"{}"]),
    ("handler_without_dot", [b"{}"]),
    ("badsyntax.handler", [b"{}"]),
    ("raises_on_import.handler", [b"{}"]),
    ("sys.handler", [b"{}"]),
    ("jsonlogs.fail", [b"{}"]),
]
ENVS = [{}, {"AWS_LAMBDA_LOG_FORMAT": "JSON"}, {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12"}]


def normalise(text):
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", "<time>", text)
    text = re.sub(r'"pid": \d+', '"pid": <pid>', text)
    return text


def run(start_rie, command, handler, payloads, env):
    rie = start_rie(handler, env=env, runtime_command=command)
    results = [rie.invoke(payload) for payload in payloads]
    previous = None
    while previous != rie.lines():  # let the RIE finish relaying the runtime's output
        previous = rie.lines()
        time.sleep(0.1)
    return ([(status, normalise(body.decode("utf-8", "replace"))) for status, body in results],
            [normalise(line) for line in previous])


@pytest.mark.parametrize("env", ENVS, ids=["text", "json", "python3.12"])
@pytest.mark.parametrize("handler, payloads", CASES, ids=[case[0] for case in CASES])
def test_same_results_and_logs_as_awslambdaric(start_rie, handler, payloads, env):
    ours = run(start_rie, [PARITY_PYTHON, BOOTSTRAP], handler, payloads, env)
    theirs = run(start_rie, [PARITY_PYTHON, "-m", "awslambdaric", handler], handler, payloads,
                 env)
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1]
