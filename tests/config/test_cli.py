"""``micro config`` commands against a real config service (CliRunner, and a subprocess for
``watch``, which runs until Ctrl-C)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner, Result

from micro.cli.config import config_app, parse_value, register
from micro.config.memory import MemoryConfig

from .config_support import threaded_server


@pytest.fixture
def address() -> Iterator[str]:
    """The address of a config service over a fresh memory backend."""
    with threaded_server(MemoryConfig()) as addr:
        yield addr


def invoke(address: str, *args: str, namespace: str | None = None) -> Result:
    env = {"MICRO_SERVER": address, "MICRO_NAMESPACE": namespace}
    return CliRunner().invoke(config_app, list(args), env=env)


def test_set_then_get_parses_json_values(address: str) -> None:
    assert invoke(address, "set", "svc.db", '{"addr": "x", "port": 5432}').exit_code == 0
    assert invoke(address, "set", "svc.db.port", "6543").exit_code == 0
    assert invoke(address, "set", "svc.greeting", "hello world").exit_code == 0
    assert invoke(address, "set", "svc.flag", "true").exit_code == 0
    got = invoke(address, "get", "svc")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout) == {
        "db": {"addr": "x", "port": 6543},
        "greeting": "hello world",
        "flag": True,
    }
    assert json.loads(invoke(address, "get", "svc.missing").stdout) is None


def test_secret_is_masked_unless_asked_for(address: str) -> None:
    assert invoke(address, "set", "db.password", "hunter2", "--secret").exit_code == 0
    masked = invoke(address, "get", "db")
    assert json.loads(masked.stdout) == {"password": "[secret]"}
    assert "hunter2" not in masked.output
    clear = invoke(address, "get", "db.password", "--secrets")
    assert json.loads(clear.stdout) == "hunter2"


def test_namespaces_and_delete(address: str) -> None:
    assert invoke(address, "set", "k", "1", "--namespace", "team-a").exit_code == 0
    assert invoke(address, "set", "k", "2", namespace="team-b").exit_code == 0  # MICRO_NAMESPACE
    assert invoke(address, "set", "k", "3").exit_code == 0  # the default namespace: micro
    assert json.loads(invoke(address, "get", "k", "-n", "team-a").stdout) == 1
    assert json.loads(invoke(address, "get", "k", namespace="team-b").stdout) == 2
    assert invoke(address, "delete", "k").exit_code == 0
    assert json.loads(invoke(address, "get").stdout) == {}
    assert json.loads(invoke(address, "get", "", "-n", "team-a").stdout) == {"k": 1}


def test_bad_input_fails_with_one_clear_line(address: str) -> None:
    result = invoke(address, "set", "a..b", "1")
    assert result.exit_code == 1
    assert "error:" in result.output and "empty segment" in result.output
    assert "Traceback" not in result.output


def test_unreachable_server_says_so() -> None:
    result = invoke(f"127.0.0.1:{free_port()}", "get", "x")
    assert result.exit_code == 1
    assert "cannot reach micro server" in result.output


def test_register_attaches_the_group(address: str) -> None:
    app = typer.Typer()

    @app.command()
    def other() -> None:
        """Another command, so that typer keeps subcommands."""

    register(app)
    result = CliRunner().invoke(
        app, ["config", "set", "x", "[1, 2]"], env={"MICRO_SERVER": address}
    )
    assert result.exit_code == 0, result.output
    assert json.loads(
        CliRunner().invoke(app, ["config", "get", "x"], env={"MICRO_SERVER": address}).stdout
    ) == [1, 2]


def test_parse_value() -> None:
    assert parse_value('{"a": [1]}') == {"a": [1]}
    assert parse_value("12.5") == 12.5
    assert parse_value("null") is None
    assert parse_value("not json") == "not json"
    assert parse_value('"quoted"') == "quoted"


def test_watch_prints_json_lines_until_interrupted(address: str) -> None:
    code = "from micro.cli.config import config_app; config_app(prog_name='micro config')"
    env = {**os.environ, "MICRO_SERVER": address, "MICRO_NAMESPACE": "watched"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "watch", "app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()])
    reader.start()
    try:
        deadline = time.monotonic() + 15
        first = None
        while first is None:  # the watch subscribes once the process is up
            assert time.monotonic() < deadline, "watch printed nothing"
            invoke(address, "set", "app.ready", "1", namespace="watched")
            try:
                first = lines.get(timeout=0.2)
            except queue.Empty:
                pass
        invoke(address, "set", "app.x", "1", namespace="watched")
        invoke(address, "set", "app.y", "two", namespace="watched")
        invoke(address, "delete", "app.x", namespace="watched")
        invoke(address, "set", "elsewhere", "1", namespace="watched")
        seen = []
        while len(seen) < 3:
            change = json.loads(lines.get(timeout=10))
            if change["path"] != "app.ready":
                seen.append(change)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        errors = proc.stderr.read() if proc.stderr else ""
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert [(c["path"], c["value"], c["deleted"]) for c in seen] == [
        ("app.x", 1, False),
        ("app.y", "two", False),
        ("app.x", None, True),
    ]
    assert seen[0]["version"] < seen[1]["version"] < seen[2]["version"]
    assert "Traceback" not in errors


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
