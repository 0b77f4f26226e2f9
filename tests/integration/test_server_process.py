"""How the server is started: flags, KAPPA_* environment variables, --config TOML file, /health."""

from __future__ import annotations

import os
import time
import urllib.request

import kappa_helpers as h


def test_health_answers_200(server):
    with urllib.request.urlopen(server.url + "/health", timeout=5) as resp:
        assert resp.status == 200


def test_defaults_region_and_account(server, client, fn_name):
    cfg = h.create_function(client, fn_name)
    assert cfg["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{fn_name}"


def test_environment_variables_configure_the_server(server_factory, tmp_path_factory):
    port = h.free_port()
    data_dir = tmp_path_factory.mktemp("env-data")
    srv = server_factory(
        data_dir=data_dir,
        port=port,
        args=[],
        env={
            "KAPPA_LISTEN": f"127.0.0.1:{port}",
            "KAPPA_DATA_DIR": str(data_dir),
            "KAPPA_REGION": "eu-west-1",
            "KAPPA_ACCOUNT_ID": "123456789012",
        },
        region="eu-west-1",
        account_id="123456789012",
    )
    client = srv.client()
    cfg = h.create_function(client, "env-configured")
    assert cfg["FunctionArn"] == "arn:aws:lambda:eu-west-1:123456789012:function:env-configured"
    err = h.api_error(client, lambda: client.get_function(FunctionName="nothing-here"), 404, "ResourceNotFoundException")
    assert err.message == "Function not found: arn:aws:lambda:eu-west-1:123456789012:function:nothing-here"
    assert any(data_dir.iterdir()), "the server wrote nothing to KAPPA_DATA_DIR"


def test_config_file_configures_the_server(server_factory, tmp_path_factory):
    port = h.free_port()
    data_dir = tmp_path_factory.mktemp("toml-data")
    config = tmp_path_factory.mktemp("toml-config") / "kappa.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n'
        f'data_dir = "{data_dir}"\n'
        'region = "ap-southeast-2"\n'
        'account_id = "111122223333"\n'
    )
    srv = server_factory(
        data_dir=data_dir, port=port, args=["--config", str(config)], region="ap-southeast-2", account_id="111122223333"
    )
    cfg = h.create_function(srv.client(), "toml-configured")
    assert cfg["FunctionArn"] == "arn:aws:lambda:ap-southeast-2:111122223333:function:toml-configured"
    assert any(data_dir.iterdir()), "the server wrote nothing to the configured data_dir"


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_server_uses_almost_no_cpu(server, client, fn_name):
    """Background work (the reaper, the provisioned-concurrency keeper, the async dispatcher)
    sleeps between passes. A keeper that woke itself used to spin a whole core, which stole the
    CPU cold starts need (a Python init took twice as long on 2 cores)."""
    h.create_function(client, fn_name)
    client.put_provisioned_concurrency_config(
        FunctionName=fn_name, Qualifier=client.publish_version(FunctionName=fn_name)["Version"],
        ProvisionedConcurrentExecutions=1,
    )
    time.sleep(1.5)  # allocation settles
    before = _cpu_seconds(server.proc.pid)
    time.sleep(3)
    used = _cpu_seconds(server.proc.pid) - before
    assert used < 0.3, f"the idle server used {used:.2f} s of CPU in 3 s"
