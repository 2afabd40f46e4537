"""The CLI's client commands as subprocesses against the real server (the session server in
front of the suite's upstream): ``ask`` (stdin piped, --json), ``models list``, ``usage`` over
the API, ``chat`` through a pseudo-terminal, one-line errors with the fix, and the server's
commands answering with the extra to install when the server's dependencies are missing."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from tests.harness import SEEKPORT, Chaos, Server

MODEL = "deepseek-chat"


def cli(
    server: Server | None, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEEKPORT_")}
    if server is not None:
        base |= {"SEEKPORT_BASE_URL": server.url, "SEEKPORT_API_KEY": server.key}
    return subprocess.run(
        [*SEEKPORT, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=120,
        check=False,
    )


def test_ask_streams_the_answer_and_reads_stdin(server: Server, fresh_chaos: Chaos) -> None:
    out = cli(server, "ask", "hello", "--model", MODEL, "--max-tokens", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "tok0 tok1 tok2\n"
    piped = cli(server, "ask", "Sum up:", "-m", MODEL, "--json", stdin="第一行\nsecond line\n")
    assert piped.returncode == 0, piped.stderr
    answer = json.loads(piped.stdout)
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] == 16
    sent = fresh_chaos.requests(1)[0]["body"]
    assert "Sum up:" in sent and "second line" in sent
    assert "第一行" in sent or "\\u7b2c\\u4e00" in sent  # the piped text follows the prompt


def test_models_and_usage_over_the_api(server: Server) -> None:
    listed = cli(server, "models", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert MODEL in [m["id"] for m in json.loads(listed.stdout)["data"]]
    table = cli(server, "models", "list")
    assert table.stdout.splitlines()[0] == "model\towned by"  # piped: tab-separated
    assert any(line.startswith(MODEL + "\t") for line in table.stdout.splitlines())
    cli(server, "ask", "count me", "-m", MODEL, "--max-tokens", "1")
    usage = cli(server, "usage", "--group-by", "model")
    assert usage.returncode == 0, usage.stderr
    rows = [line.split("\t") for line in usage.stdout.splitlines()]
    assert rows[0][:2] == ["model", "requests"]
    assert any(r[0] == MODEL and int(r[1]) >= 1 for r in rows[1:])
    as_json = json.loads(cli(server, "usage", "--json").stdout)
    assert as_json["object"] == "usage_report"


def test_errors_are_one_line_with_the_fix(server: Server) -> None:
    bad = cli(server, "models", "list", env={"SEEKPORT_API_KEY": "sk-sp-nope"})
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "SEEKPORT_API_KEY" in bad.stderr
    gone = cli(None, "ask", "hi", env={"SEEKPORT_BASE_URL": "http://127.0.0.1:9"})
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert "cannot reach the server at http://127.0.0.1:9" in gone.stderr
    empty = cli(server, "ask")
    assert empty.returncode == 2 and "nothing to ask" in empty.stderr
    wrong = cli(server, "ask", "hi", "-m", "no-such-model")
    assert wrong.returncode == 1 and "request id" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_server_commands_name_the_extra_when_it_is_missing(server: Server) -> None:
    # a client-only install: the server's dependencies cannot be imported
    code = (
        "import sys\n"
        "for m in ('pydantic_settings', 'sqlalchemy', 'uvicorn', 'fastapi'):\n"
        "    sys.modules[m] = None\n"
        "from seekport.cli.main import main\n"
        "sys.argv = ['seekport', *sys.argv[1:]]\n"
        "main()\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEEKPORT_")}
    env = base | {"SEEKPORT_BASE_URL": server.url, "SEEKPORT_API_KEY": server.key}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    for args in (("serve",), ("keys", "create", "--name", "x")):
        out = run(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "pip install 'seekport[server]'" in out.stderr
    ask = run("ask", "hi", "-m", MODEL, "--max-tokens", "2")
    assert ask.returncode == 0 and ask.stdout == "tok0 tok1\n", ask.stderr


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout_s: float = 30) -> None:
    end = time.monotonic() + timeout_s
    while needle not in seen:
        left = end - time.monotonic()
        assert left > 0, f"no {needle!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen.extend(chunk)
    assert needle in seen, f"no {needle!r} in {bytes(seen)!r}"


def test_chat_in_a_terminal(server: Server, fresh_chaos: Chaos) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKPORT_")}
    env |= {"SEEKPORT_BASE_URL": server.url, "SEEKPORT_API_KEY": server.key, "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: seekport chat on the terminal
        os.execvpe(SEEKPORT[0], [*SEEKPORT, "chat", "-m", MODEL, "--max-tokens", "2"], env)
    seen = bytearray()
    try:
        _read_until(fd, b"> ", seen)
        os.write(fd, "你好\n".encode())
        _read_until(fd, b"tok0 tok1", seen)
        _read_until(fd, b"> ", seen[seen.index(b"tok0 tok1") :])
        os.write(fd, b"/model renamed\n")
        _read_until(fd, b"model: renamed", seen)
        os.write(fd, b"again\n")
        time.sleep(0.1)
        _read_until(fd, b"tok0 tok1", seen[seen.index(b"model: renamed") :])
        os.write(fd, b"/exit\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    sent = [r["model"] for r in fresh_chaos.requests(2)]
    assert sent == ["deepseek-chat", "deepseek-chat"]  # both names lead to the same upstream model
    second = fresh_chaos.requests(1)[0]["body"]
    assert "again" in second and "tok0 tok1" in second  # the history went along


def test_server_lists_print_json_lines(server: Server) -> None:
    server.cli("users", "create", "--name", "json-user")
    listed = {
        what: [json.loads(line) for line in server.cli(what, "list", "--json").stdout.splitlines()]
        for what in ("keys", "tenants", "users")
    }
    assert any(k["name"] == "tests" and k["state"] == "active" for k in listed["keys"])
    assert all(
        set(k) == {"id", "name", "role", "tenant_id", "user_id", "prefix", "state"}
        for k in listed["keys"]
    )  # never a secret or its hash
    assert any(t["id"] == "ten_default" for t in listed["tenants"])
    assert "json-user" in [u["name"] for u in listed["users"]]
