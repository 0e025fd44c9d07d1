"""The command line on click: fast start, one error line (or JSON), the exit-code table, tokens
never only on the command line, the member client's patience with rate limits."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest

from coop.node.cli import cli, main
from coop.node.cli.exits import Exit, UsageError
from coop.node.cli.member import chat_title, split_export
from coop.node.cli.node_cmds import public_url_mismatch
from coop.node.cli.output import Progress
from coop.node.cli.tokens import resolve_token, store_token, stored_tokens
from coop.node.client import NodeClient, UnreachableError, check_node_url
from coop.node.errors import InputError, RateLimitedError
from coop.node.intake.chat import IntakeFormat

HEAVY = ("pyarrow", "numpy", "flwr", "httpx", "litestar")


@pytest.mark.parametrize("argv", [["--help"], ["contribute", "--help"], ["member", "list", "--help"]])
def test_cli_help_imports_nothing_heavy(argv: list[str]) -> None:
    probe = (
        "import sys\n"
        "from coop.node.cli import main\n"
        f"code = main({argv!r})\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "sys.stderr.write(repr((code, heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("(0, [])"), done.stderr


def _walk(command: click.Command, path: str = "coop") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += _walk(sub, f"{path} {name}")
    return found


@pytest.mark.parametrize(("path", "command"), _walk(cli), ids=[p for p, _ in _walk(cli)])
def test_cli_every_option_has_help_text(path: str, command: click.Command) -> None:
    assert command.help, path
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path} {param.opts[0]} has no --help text"


def test_cli_missing_data_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["metrics", str(tmp_path / "typo")]) == Exit.USAGE
    err = capsys.readouterr().err
    assert err.startswith("coop: error: ") and err.count("\n") == 1


def test_cli_folder_that_is_no_node_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["process", str(tmp_path)]) == Exit.USAGE
    assert "coop init" in capsys.readouterr().err


def test_cli_json_flag_makes_errors_json_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["metrics", str(tmp_path / "typo"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error = json.loads(captured.err)
    assert error["code"] == 2 and error["kind"] == "usage" and error["field"] == "DIR"
    assert "typo" in error["error"]


def test_cli_unknown_option_with_json_is_a_json_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "--json", "--nope", "x"]) == 2
    assert json.loads(capsys.readouterr().err)["kind"] == "usage"


def test_cli_node_url_without_scheme_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = tmp_path / "chat.txt"
    chat.write_text("User: hi\n\nAssistant: hello", encoding="utf-8")
    args = [
        "contribute",
        str(chat),
        "--node",
        "127.0.0.1:8000",
        "--token",
        "t",
        "--label",
        "good",
        "--consent",
    ]
    assert main(args) == Exit.USAGE
    assert "scheme" in capsys.readouterr().err


def test_exit_codes_table_is_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for code in Exit:
        assert f"\n| {int(code)} | " in readme, (
            f"exit code {int(code)} ({code.name}) is not in the README table"
        )


# -- tokens ------------------------------------------------------------------------------------


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("COOP_TOKEN", raising=False)
    return tmp_path / "config"


def test_token_precedence_flag_then_file_then_env_then_login(
    config_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://127.0.0.1:8000"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n", encoding="utf-8")
    store_token(url, "from-login")
    monkeypatch.setenv("COOP_TOKEN", "from-env")

    assert resolve_token(url, "from-flag", token_file) == "from-flag"
    assert resolve_token(url, None, token_file) == "from-file"
    assert resolve_token(url, None, None) == "from-env"
    monkeypatch.delenv("COOP_TOKEN")
    assert resolve_token(url + "/", None, None) == "from-login"


def test_token_missing_everywhere_is_a_usage_error_naming_the_ways(config_home: Path) -> None:
    with pytest.raises(UsageError, match="COOP_TOKEN") as caught:
        resolve_token("http://127.0.0.1:8000", None, None)
    assert caught.value.field == "--token"


def test_login_store_is_private_and_keeps_other_nodes(config_home: Path) -> None:
    store_token("http://a.example", "coop_a")
    path = store_token("https://b.example", "coop_b")

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path == config_home / "coop" / "credentials.toml"
    assert stored_tokens() == {"http://a.example": "coop_a", "https://b.example": "coop_b"}


# -- the member client ---------------------------------------------------------------------------


def _client(handler: httpx.MockTransport, waits: list[float], *, max_wait: float = 300.0) -> NodeClient:
    return NodeClient("http://node.test", "coop_t", transport=handler, sleep=waits.append, max_wait=max_wait)


def test_client_429_with_retry_after_is_waited_out_then_succeeds() -> None:
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(201, json={"uid": "u"})]
    )
    waits: list[float] = []
    with _client(httpx.MockTransport(lambda request: next(answers)), waits) as client:
        response = client.request("POST", "/api/v1/contributions")
    assert response.json() == {"uid": "u"}
    assert waits == [2.0]


def test_client_retry_after_beyond_the_total_wait_is_a_rate_limit_error() -> None:
    waits: list[float] = []
    transport = httpx.MockTransport(lambda request: httpx.Response(429, headers={"Retry-After": "3"}))
    with _client(transport, waits, max_wait=7) as client, pytest.raises(RateLimitedError):
        client.request("GET", "/api/v1/me")
    assert waits == [3.0, 3.0]  # a bounded wait: the third would pass 7 s


def test_client_unreachable_node_fails_after_one_attempt() -> None:
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with _client(httpx.MockTransport(refuse), []) as client, pytest.raises(UnreachableError):
        client.request("GET", "/api/v1/me")
    assert len(calls) == 1


def test_client_checks_the_url_has_a_scheme() -> None:
    assert check_node_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    with pytest.raises(InputError):
        check_node_url("127.0.0.1:8000")


# -- exports, titles, the served address -----------------------------------------------------------


def _owui(chat_id: str, title: str, text: str) -> bytes:
    message = {"id": "m1", "parentId": None, "childrenIds": [], "role": "user", "content": text}
    answer = {"id": "m2", "parentId": "m1", "childrenIds": [], "role": "assistant", "content": "ok"}
    chat = {"title": title, "history": {"currentId": "m2", "messages": {"m1": message, "m2": answer}}}
    return json.dumps({"id": chat_id, "title": title, "chat": chat}).encode()


def test_split_export_ndjson_gives_each_chat_with_its_id_and_title() -> None:
    data = b"\n".join([_owui("c1", "Trip", "where to?"), _owui("c2", "", "second chat\nmore")])
    chats = split_export(data, IntakeFormat.OPENWEBUI)
    assert [(c.chat_id, c.title) for c in chats] == [("c1", "Trip"), ("c2", "second chat")]
    assert all(json.loads(c.document)["id"] == c.chat_id for c in chats)


def test_mine_title_falls_back_to_the_first_user_line_then_the_uid() -> None:
    assert chat_title({"uid": "u1", "title": "Trip plans"}) == "Trip plans"
    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": "Hello there\nmore"}]
    assert chat_title({"uid": "u1", "messages": messages}) == "Hello there"
    assert chat_title({"uid": "u1"}) == "u1"


@pytest.mark.parametrize(
    ("public_url", "host", "port", "warned"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1", 8000, False),
        ("http://127.0.0.1:8000", "127.0.0.1", 8001, True),
        ("http://localhost:8000", "0.0.0.0", 8000, True),  # noqa: S104
        ("http://127.0.0.1:8000", "192.0.2.7", 8000, True),
        ("https://coop.example.org", "127.0.0.1", 8000, False),  # a proxy in front
        ("http://192.0.2.7:9000", "192.0.2.7", 8000, True),
    ],
)
def test_serve_warns_when_public_url_is_not_the_served_address(
    public_url: str, host: str, port: int, warned: bool
) -> None:
    assert (public_url_mismatch(public_url, host, port) is not None) is warned


def test_progress_is_silent_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress()
    progress("cutting")
    progress.count(1, 2, "chats")
    assert progress.callback is None
    assert capsys.readouterr().err == ""
