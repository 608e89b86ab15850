"""The README's first five minutes, run for real: server process, CLI, gateway, runtime."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .conftest import REPO, ServerProcess, wait_for

HELLO = str(REPO / "examples" / "helloworld")


def http_post(url: str, body: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def service_names(server: ServerProcess) -> set[str]:
    return {s["name"] for s in server.micro_json("services")}


def status_of(server: ServerProcess, name: str) -> dict[str, Any]:
    (row,) = [r for r in server.micro_json("status") if r["name"] == name]
    return row


def callable_as(server: ServerProcess, name: str, endpoint: str, payload: str) -> str:
    result = server.micro("call", name, endpoint, payload)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_flow(server: ServerProcess, tmp_path: Path) -> None:
    started = server.micro("run", HELLO)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "helloworld" in service_names(server), what="helloworld listed")

    out = callable_as(server, "helloworld", "Helloworld.Call", '{"name": "Alice"}')
    assert json.loads(out) == {"message": "Hello Alice"}

    dynamic = server.micro("helloworld", "call", "--name", "Alice")
    assert dynamic.returncode == 0, dynamic.stderr
    assert json.loads(dynamic.stdout) == {"message": "Hello Alice"}
    helptext = server.micro("helloworld", "call", "--help")
    assert "--name" in helptext.stdout

    assert http_post(f"{server.gateway}/helloworld/call", '{"name": "Alice"}') == (
        200,
        {"message": "Hello Alice"},
    )

    streamed = server.micro(
        "stream", "helloworld", "Helloworld.Stream", '{"name": "B", "count": 2}'
    )
    assert [json.loads(line)["message"] for line in streamed.stdout.splitlines()] == [
        "Hello B #1",
        "Hello B #2",
    ], streamed.stderr

    # micro new: the scaffold runs as generated
    created = server.micro("new", "greeter", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert server.micro("run", str(tmp_path / "greeter")).returncode == 0
    wait_for(lambda: "greeter" in service_names(server), what="greeter listed")
    out = callable_as(server, "greeter", "Greeter.Call", '{"name": "Zoe"}')
    assert json.loads(out) == {"message": "Hello Zoe"}

    row = status_of(server, "helloworld")
    assert row["status"] == "running" and row["pid"] and row["source"] == HELLO
    logs = server.micro("logs", "helloworld", "-n", "20")
    assert "serving on" in logs.stdout

    kill = server.micro("kill", "greeter")
    assert kill.returncode == 0, kill.stderr
    wait_for(lambda: "greeter" not in service_names(server), what="greeter gone")
    assert "greeter" not in {r["name"] for r in server.micro_json("status")}


def test_scaffold_tests_pass_as_generated(server: ServerProcess, tmp_path: Path) -> None:
    assert server.micro("new", "my-svc", cwd=tmp_path).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path / "my-svc",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_crashed_service_is_restarted(server: ServerProcess) -> None:
    assert server.micro("run", HELLO).returncode == 0
    first = wait_for(lambda: status_of(server, "helloworld")["pid"], what="pid")
    wait_for(lambda: "helloworld" in service_names(server), what="registered")
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        row = status_of(server, "helloworld")
        return (
            row["restarts"] >= 1 and row["pid"] not in (None, first) and row["status"] == "running"
        )

    wait_for(restarted, what="restart after SIGKILL")
    wait_for(
        lambda: json.loads(callable_as(server, "helloworld", "Helloworld.Call", '{"name": "A"}')),
        what="callable again",
    )


def test_services_come_back_after_server_restart(server: ServerProcess) -> None:
    assert server.micro("run", HELLO).returncode == 0
    wait_for(lambda: "helloworld" in service_names(server), what="registered")
    old_pid = status_of(server, "helloworld")["pid"]
    server.stop()
    wait_for(lambda: not _alive(old_pid), timeout=15, what="service stopped with the server")
    server.start()
    wait_for(lambda: "helloworld" in service_names(server), what="registered after restart")
    out = callable_as(server, "helloworld", "Helloworld.Call", '{"name": "again"}')
    assert json.loads(out) == {"message": "Hello again"}


def test_services_come_back_after_server_is_killed(server: ServerProcess) -> None:
    assert server.micro("run", HELLO).returncode == 0
    wait_for(lambda: "helloworld" in service_names(server), what="registered")
    old_pid = status_of(server, "helloworld")["pid"]
    server.stop(signal.SIGKILL)
    wait_for(lambda: not _alive(old_pid), timeout=15, what="orphan gone")
    server.start()
    wait_for(lambda: "helloworld" in service_names(server), what="registered after restart")
    assert status_of(server, "helloworld")["pid"] != old_pid


def test_cli_errors_are_one_line_and_non_zero(server: ServerProcess, tmp_path: Path) -> None:
    cases = [
        (("call", "nope", "Nope.Call"), "not found"),
        (("call", "registry", "Registry.GetService", "{bad json"), "not valid JSON"),
        (("call", "registry", "Registry.GetService", '{"name": 1}'), "$.name"),
        (("nosuchthing",), "no command or service"),
        (("run", str(tmp_path / "missing")), "not a directory"),
        (("kill", "ghost"), "ghost"),
        (("logs", "ghost"), "ghost"),
    ]
    for args, words in cases:
        result = server.micro(*args)
        assert result.returncode != 0, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert words in lines[0], (args, lines[0])


def test_cli_without_a_server_says_so(tmp_path: Path) -> None:
    env = dict(os.environ, MICRO_SERVER="127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-m", "micro.cli", "services"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot reach micro server at 127.0.0.1:9" in result.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_garbage_on_the_rpc_port_leaves_the_server_serving(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.rpc_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.0 400") and b"micro RPC protocol" in reply
    with socket.create_connection(("127.0.0.1", server.rpc_port), timeout=5) as sock:
        sock.sendall(b"MCR1" + b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")  # not msgpack
        assert sock.recv(4096) == b""  # closed
    with socket.create_connection(("127.0.0.1", server.rpc_port), timeout=5) as sock:
        sock.sendall(b"MCR1\x7f\xff\xff\xff\x99\x01\x07")  # 2 GiB frame announced, then gone
    assert "registry" in service_names(server)
    assert server.proc is not None and server.proc.poll() is None
