"""The deploy files agree with the code: images, entrypoint, compose, systemd units and the operator's guide.

No container engine runs here, so the images and the compose file are checked
statically; the entrypoint runs for real against the real `coop`; every `coop`
command a deploy file or OPERATIONS.md uses is asked for its `--help`, and every
option it passes must be in that help; every HTTP path the guide names must be
a route of the app.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest

from coop.node.config import Config, NodeSection
from coop.node.http.app import create_app

from factories import make_node
from nodeproc import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONTAINER = DEPLOY / "container"
SYSTEMD = DEPLOY / "systemd"
ENTRYPOINT = CONTAINER / "entrypoint.sh"
OPERATIONS = DEPLOY / "OPERATIONS.md"
COMPOSE = DEPLOY / "compose.yaml"
IMAGES = {"node": CONTAINER / "Containerfile", "flower": CONTAINER / "Containerfile.supernode"}
UNITS = sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer"))
BIN = Path(sys.executable).parent
COOP = BIN / "coop"
VENV_IN_IMAGE = "/opt/coop/venv"

# Commands added together with these files; always checked, even if no file used them.
NEW_COMMANDS = (("backup",), ("publish",), ("site", "build"))

NODE_SERVICES = ("coop-a", "coop-b", "coop-c")


def _files_using_coop() -> list[str]:
    files = [OPERATIONS, ENTRYPOINT, COMPOSE, *IMAGES.values(), *UNITS]
    return [path.read_text(encoding="utf-8") for path in files]


# -- `coop ...` invocations in the deploy files and the guide ---------------------------------

# The rest of the line is a lookahead, so that two commands on one line are both found.
_INVOCATION = re.compile(r"(?:^|(?<=[\s`(])|(?<=bin/))coop[ \t]+(?=([^\n]*))", re.MULTILINE)
_WORD = re.compile(r"^[a-z][a-z-]*$")
_OPTION = re.compile(r"^--[a-z][a-z-]*$")
_END = re.compile(r"`|\||;|&&|\s#|\)")


def coop_invocations(text: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """(command words, options) of every `coop ...` in a text; continuation lines joined."""
    found = []
    for match in _INVOCATION.finditer(text.replace("\\\n", " ")):
        rest = _END.split(match.group(1), maxsplit=1)[0]
        tokens = rest.split()
        words: list[str] = []
        for token in tokens:
            if not _WORD.match(token):
                break
            words.append(token)
        if words:
            options = tuple(t.split("=", 1)[0] for t in tokens if _OPTION.match(t.split("=", 1)[0]))
            found.append((tuple(words), options))
    return found


def _commands() -> dict[tuple[str, ...], set[str]]:
    """Every command path used anywhere, with the options used with it."""
    commands: dict[tuple[str, ...], set[str]] = {words: set() for words in NEW_COMMANDS}
    for text in _files_using_coop():
        for words, options in coop_invocations(text):
            commands.setdefault(words, set()).update(options)
    return commands


COMMANDS = _commands()


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """`coop WORDS --help` for every command path, run in parallel (each is a fresh process)."""

    def run(words: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(COOP), *words, "--help"], capture_output=True, text=True, timeout=120, check=False
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(COMMANDS, pool.map(run, COMMANDS), strict=True))


def test_coop_invocations_are_parsed_from_docs_and_shell() -> None:
    text = (
        "run `coop member add DIR ada --admin` as the user `coop`\n"
        'exec coop serve "$D" --host "$H" --port 8000 | tee\n'
        "ExecStart=/opt/coop/venv/bin/coop backup /var/lib/coop/%i out\n"
        "coop eval request --key k \\\n    --superlink h:1 # comment --nope\n"
        "sudo -u coop -H /opt/coop/venv/bin/hf auth login\n"
        "/var/backups/coop owned by coop, and /var/lib/coop /etc/coop made private\n"
        "`coop settings show DIR` / `coop settings set DIR K=V --json`\n"
    )
    assert coop_invocations(text) == [
        (("member", "add"), ("--admin",)),
        (("serve",), ("--host", "--port")),
        (("backup",), ()),
        (("eval", "request"), ("--key", "--superlink")),
        (("settings", "show"), ()),
        (("settings", "set"), ("--json",)),
    ]


def test_operations_guide_shows_the_commands_an_operator_needs() -> None:
    # The guide at least walks through these; each is then checked against the CLI below.
    documented = {w for w, _ in coop_invocations(OPERATIONS.read_text(encoding="utf-8"))}
    for words in [
        ("init",),
        ("serve",),
        ("member", "add"),
        ("audit", "verify"),
        ("embargo", "on"),
        ("identity", "rotate"),
        ("peers", "add"),
        ("peers", "list"),
        *NEW_COMMANDS,
    ]:
        assert words in documented, f"OPERATIONS.md does not show `coop {' '.join(words)}`"


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=lambda w: " ".join(w))
def test_coop_command_used_in_deploy_files_exists(
    words: tuple[str, ...], helps: dict[tuple[str, ...], subprocess.CompletedProcess[str]]
) -> None:
    result = helps[words]
    new = " (a new command: it must land before these files do)" if words in NEW_COMMANDS else ""
    assert result.returncode == 0, f"`coop {' '.join(words)} --help` failed{new}: {result.stderr.strip()}"
    for option in sorted(COMMANDS[words]):
        assert option in result.stdout, f"`coop {' '.join(words)}` has no option {option}"


# -- the entrypoint -------------------------------------------------------------------------------


def test_entrypoint_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_entrypoint_is_executable() -> None:
    assert ENTRYPOINT.stat().st_mode & 0o111


def _entrypoint(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        **env,
    }
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _node_id(root: Path) -> str:
    result = subprocess.run(
        [str(COOP), "identity", "show", str(root), "--json"], capture_output=True, text=True, check=True
    )
    return str(msgspec.json.decode(result.stdout)["node_id"])


def test_entrypoint_prepare_makes_the_node_and_shares_only_the_eval_token(tmp_path: Path) -> None:
    data, share = tmp_path / "data", tmp_path / "eval"
    share.mkdir()
    env = {
        "COOP_DATA": str(data),
        "COOP_EVAL_SHARE": str(share),
        "COOP_NAME": "Entry Co-op",
        "COOP_PUBLIC_URL": "https://coop.example.org/",
    }
    first = _entrypoint("prepare", **env)
    assert first.returncode == 0, first.stderr
    node_id = _node_id(data)
    again = _entrypoint("prepare", **env)  # a restart: same node, nothing made twice
    assert again.returncode == 0, again.stderr
    assert _node_id(data) == node_id
    assert data.stat().st_mode & 0o777 == 0o700
    config = tomllib.loads((data / "node.toml").read_text(encoding="utf-8"))
    assert config["node"]["name"] == "Entry Co-op"
    assert config["node"]["public_url"] == "https://coop.example.org"
    token = share / "eval.token"
    assert token.read_bytes() == (data / "keys" / "eval.token").read_bytes()
    assert token.stat().st_mode & 0o777 in (0o400, 0o440)
    assert sorted(p.name for p in share.iterdir()) == ["eval.token"]


def test_entrypoint_first_start_without_a_name_is_refused(tmp_path: Path) -> None:
    result = _entrypoint("prepare", COOP_DATA=str(tmp_path / "data"), COOP_EVAL_SHARE=str(tmp_path))
    assert result.returncode == 2
    assert "COOP_NAME" in result.stderr
    assert not (tmp_path / "data" / "node.toml").exists()


def test_entrypoint_pins_peers_with_known_ids_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root, name in ((a, "A"), (b, "B")):
        made = _entrypoint(
            "prepare", COOP_DATA=str(root), COOP_NAME=name, COOP_EVAL_SHARE=str(tmp_path / "none")
        )
        assert made.returncode == 0, made.stderr
    peers = f"http://coop-b.invalid:8000,{_node_id(b)}"
    first = _entrypoint("pin-peers", COOP_DATA=str(a), COOP_PEERS=peers)
    assert first.returncode == 0, first.stderr
    second = _entrypoint("pin-peers", COOP_DATA=str(a), COOP_PEERS=peers)
    assert second.returncode == 0, second.stderr
    assert "already pinned" in second.stderr
    listed = subprocess.run(
        [str(COOP), "peers", "list", str(a), "--json"], capture_output=True, text=True, check=True
    )
    pinned = msgspec.json.decode(listed.stdout)
    assert [(p["url"], p["node_id"]) for p in pinned] == [("http://coop-b.invalid:8000", _node_id(b))]


def test_entrypoint_supernode_refuses_to_run_where_it_sees_node_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = _entrypoint("prepare", COOP_DATA=str(data), COOP_NAME="Seen", COOP_EVAL_SHARE=str(tmp_path))
    assert made.returncode == 0, made.stderr
    for name in ("ca.crt", "supernode.key"):
        (tmp_path / name).write_text("placeholder\n")
    result = _entrypoint(
        "supernode",
        COOP_DATA=str(data),
        COOP_EVAL_SHARE=str(tmp_path),
        COOP_EVAL_URL="http://127.0.0.1:8000",
        FLWR_SUPERLINK="127.0.0.1:9",
        FLWR_CA_CERT=str(tmp_path / "ca.crt"),
        FLWR_SUPERNODE_KEY=str(tmp_path / "supernode.key"),
    )
    assert result.returncode == 2
    assert "can see a node's data directory" in result.stderr


def test_entrypoint_health_fails_when_nothing_answers() -> None:
    result = _entrypoint("health", "node", COOP_PORT=str(free_port()))
    assert result.returncode != 0


def _entrypoint_modes() -> set[str]:
    text = ENTRYPOINT.read_text(encoding="utf-8")
    body = text[text.index("main() {") :]
    return set(re.findall(r"^\s+([a-z-]+)\)", body, re.MULTILINE))


# -- the images -------------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined, comments dropped."""
    lines = [
        line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_builds_from_python_311_slim(image: str) -> None:
    steps = _instructions(IMAGES[image])
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    bases = [a.split()[0] for kind, a in steps if kind == "FROM"]
    assert bases
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        assert resolved == "python:3.11-slim"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_runs_as_a_non_root_user(image: str) -> None:
    users = [a for kind, a in _instructions(IMAGES[image]) if kind == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_turns_off_flower_telemetry_and_update_checks(image: str) -> None:
    env = " ".join(a for kind, a in _instructions(IMAGES[image]) if kind == "ENV")
    assert "FLWR_TELEMETRY_ENABLED=0" in env
    assert "FLWR_DISABLE_UPDATE_CHECK=1" in env


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_installs_the_package_and_copies_only_what_exists(image: str) -> None:
    steps = _instructions(IMAGES[image])
    assert any(kind == "RUN" and "pip install ." in a for kind, a in steps)
    for kind, arguments in steps:
        if kind == "COPY" and "--from=" not in arguments:
            *sources, _ = arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{image}: COPY {source} does not exist"
    entry = [a for kind, a in steps if kind == "ENTRYPOINT"]
    assert entry == ['["coop-entrypoint"]']
    assert any(kind == "COPY" and a.startswith("deploy/container/entrypoint.sh ") for kind, a in steps)
    command = [a for kind, a in steps if kind == "CMD"][-1]
    assert msgspec.json.decode(command)[0] in _entrypoint_modes()


def test_node_image_keeps_data_in_a_volume_with_a_healthcheck() -> None:
    steps = _instructions(IMAGES["node"])
    volumes = [msgspec.json.decode(a) for kind, a in steps if kind == "VOLUME"]
    assert ["/var/lib/coop/data", "/var/lib/coop/eval"] in volumes
    assert any(kind == "HEALTHCHECK" and "health" in a and "node" in a for kind, a in steps)


def test_the_flower_app_ships_inside_the_package() -> None:
    # Read from the source, not imported: importing the requester imports flwr (slow, and it warns).
    source = (ROOT / "src" / "coop" / "node" / "evaluation" / "flower_run.py").read_text(encoding="utf-8")
    assert 'DEPLOY_APP: Final = Path(__file__).resolve().parent / "flower_app"' in source
    app = ROOT / "src" / "coop" / "node" / "evaluation" / "flower_app" / "pyproject.toml"
    assert "coop.eval.flower:app_server" in app.read_text(encoding="utf-8")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"node/evaluation/flower_app/pyproject.toml"' in pyproject  # package data: in every install


def test_images_install_the_pinned_flower() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert any(
        dep.replace(" ", "").endswith("==1.41.0") and dep.startswith("flwr")
        for dep in project["project"]["dependencies"]
    )


# -- compose ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: compose.yaml is not parsed")
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in compose["services"].items()}


def _mounts(spec: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of a service's short-syntax volumes."""
    out = []
    for entry in spec.get("volumes", []):
        parts = entry.split(":")
        out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def _long_running(spec: dict[str, Any]) -> bool:
    return spec.get("restart", "no") != "no" and not spec.get("profiles")


def test_compose_runs_three_nodes_a_superlink_and_a_supernode_each(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for node in NODE_SERVICES:
        assert services[node]["command"] == ["node"]
        assert services[f"supernode-{node[-1]}"]["command"] == ["supernode"]
    assert services["superlink"]["command"] == ["superlink"]


def test_compose_commands_are_entrypoint_modes(compose: dict[str, Any]) -> None:
    modes = _entrypoint_modes()
    for name, spec in _services(compose).items():
        assert spec["command"][0] in modes, f"{name}: {spec['command'][0]} is not an entrypoint mode"


def test_compose_references_exist(compose: dict[str, Any]) -> None:
    services = _services(compose)
    volumes = set(compose.get("volumes") or {})
    secrets = set(compose.get("secrets") or {})
    used_volumes: set[str] = set()
    for name, spec in services.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        mode = spec.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.removeprefix("service:") in services, f"{name}: {mode}"
        for source, _, _ in _mounts(spec):
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
                used_volumes.add(source)
        for secret in spec.get("secrets", []):
            assert secret in secrets, f"{name} uses undeclared secret {secret}"
        build = spec.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build}"
        image = spec.get("image")
        assert image, f"{name} has no image name"
    assert used_volumes == volumes, f"declared but unused: {volumes - used_volumes}"
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("./flower/"), f"{name}: made by the operator in deploy/flower/"


def test_compose_gives_every_long_running_service_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, spec in _services(compose).items():
        if _long_running(spec):
            test = spec["healthcheck"]["test"]
            assert test[:3] == ["CMD", "coop-entrypoint", "health"], name
            assert test[3] in ("node", "superlink", "supernode"), name


def test_compose_keeps_each_data_volume_to_its_own_node(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for node in NODE_SERVICES:
        data = [src for src, target, _ in _mounts(services[node]) if target == "/var/lib/coop/data"]
        assert len(data) == 1, node
        users = [
            name for name, spec in services.items() if any(src == data[0] for src, _, _ in _mounts(spec))
        ]
        long_running = [name for name in users if _long_running(services[name])]
        assert long_running == [node], f"{data[0]} is mounted by {users}"


def test_compose_supernodes_share_the_network_not_the_data(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for node in NODE_SERVICES:
        supernode = services[f"supernode-{node[-1]}"]
        assert supernode["network_mode"] == f"service:{node}"
        node_mounts = {target: src for src, target, _ in _mounts(services[node])}
        mounts = _mounts(supernode)
        assert all(src != node_mounts["/var/lib/coop/data"] for src, _, _ in mounts)
        assert (node_mounts["/var/lib/coop/eval"], "/var/lib/coop/eval", True) in mounts
        env = supernode["environment"]
        assert urlsplit(env["COOP_EVAL_URL"]).hostname == "127.0.0.1"
        assert env["COOP_EVAL_TOKEN_FILE"] == "/var/lib/coop/eval/eval.token"
        assert env["FLWR_SUPERLINK"].split(":")[0] == "superlink"
        assert set(supernode["depends_on"]) == {node, "superlink"}


def test_compose_wires_every_node_to_the_two_others(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for node in NODE_SERVICES:
        data = next(src for src, target, _ in _mounts(services[node]) if target == "/var/lib/coop/data")
        jobs = [
            spec
            for spec in services.values()
            if spec["command"] == ["pin-peers"] and any(src == data for src, _, _ in _mounts(spec))
        ]
        assert len(jobs) == 1, node
        urls = [entry.split(",")[0] for entry in jobs[0]["environment"]["COOP_PEERS"].split()]
        assert sorted(urlsplit(u).hostname or "" for u in urls) == sorted(set(NODE_SERVICES) - {node})
        assert all(urlsplit(u).port == 8000 for u in urls)
        assert set(jobs[0]["depends_on"]) == set(NODE_SERVICES)
        assert all(c["condition"] == "service_healthy" for c in jobs[0]["depends_on"].values())


def test_compose_publishes_ports_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, spec in _services(compose).items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


# -- systemd ----------------------------------------------------------------------------------------


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
        else:
            key, _, value = line.partition("=")
            sections[current].append((key.strip(), value.strip()))
    return sections


def _values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def test_systemd_units_are_the_expected_ones() -> None:
    assert {u.name for u in UNITS} == {
        "coop-node@.service",
        "coop-backup@.service",
        "coop-backup@.timer",
        "coop-supernode@.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_unit_has_its_sections(unit: Path) -> None:
    sections = _unit(unit)
    kind = "Service" if unit.suffix == ".service" else "Timer"
    assert {"Unit", kind, "Install"} <= set(sections), f"{unit.name}: {sorted(sections)}"
    assert _values(sections["Unit"], "Description")


@pytest.mark.parametrize("unit", sorted(SYSTEMD.glob("*.service")), ids=lambda p: p.name)
def test_systemd_service_runs_from_the_venv_as_a_non_root_user(unit: Path) -> None:
    service = _unit(unit)["Service"]
    (start,) = _values(service, "ExecStart")
    program = "flower-supernode" if unit.name.startswith("coop-supernode@") else "coop"
    assert f"{VENV_IN_IMAGE}/bin/{program} " in start
    user = _values(service, "User")
    assert user == ["coop"] or _values(service, "DynamicUser") == ["yes"]
    assert _values(service, "NoNewPrivileges") == ["yes"]


def test_systemd_node_unit_serves_its_instance() -> None:
    (start,) = _values(_unit(SYSTEMD / "coop-node@.service")["Service"], "ExecStart")
    assert start.startswith(f"{VENV_IN_IMAGE}/bin/coop serve /var/lib/coop/%i ")


def test_systemd_backup_timer_runs_the_backup_nightly() -> None:
    timer = _unit(SYSTEMD / "coop-backup@.timer")
    calendar = _values(timer["Timer"], "OnCalendar")
    assert calendar and re.fullmatch(r"\*-\*-\* \d\d:\d\d(:\d\d)?", calendar[0])
    assert _values(timer["Timer"], "Persistent") == ["true"]
    # A timer starts the service of its own name unless it says Unit=.
    assert not _values(timer["Timer"], "Unit")
    assert (SYSTEMD / "coop-backup@.service").exists()
    service = _unit(SYSTEMD / "coop-backup@.service")["Service"]
    assert _values(service, "Type") == ["oneshot"]
    assert "/var/backups/coop" in " ".join(_values(service, "ReadWritePaths"))


def test_systemd_supernode_cannot_see_node_data() -> None:
    service = _unit(SYSTEMD / "coop-supernode@.service")["Service"]
    hidden = " ".join(_values(service, "InaccessiblePaths")).split()
    assert "-/var/lib/coop" in hidden or "/var/lib/coop" in hidden
    credentials = _values(service, "LoadCredential")
    assert "eval.token:/var/lib/coop/%i/keys/eval.token" in credentials
    (start,) = _values(service, "ExecStart")
    assert "coop-eval-token-file='%d/eval.token'" in start
    assert "--auth-supernode-private-key" in start
    assert "--root-certificates" in start


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    # Instances of the templates, with the venv path pointed at this one (verify checks that
    # every executable exists).
    names = []
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8").replace(f"{VENV_IN_IMAGE}/bin/", f"{BIN}/")
        name = unit.name.replace("@.", "@demo.")
        (tmp_path / name).write_text(text, encoding="utf-8")
        names.append(str(tmp_path / name))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "coop-" in line]
    assert result.returncode == 0, result.stderr
    assert complaints == []


# -- OPERATIONS.md ----------------------------------------------------------------------------------

REQUIRED_SECTIONS = (
    "Requirements",
    "Install (A): a virtual environment and systemd",
    "Install (B): containers",
    "Create the node and the first admin",
    "Configuration (`node.toml`)",
    "Running under systemd",
    "Reverse proxy and TLS",
    "nginx",
    "Caddy",
    "Firewall",
    "Backups",
    "Restore",
    "Upgrades",
    "Key rotation",
    "After a suspected key compromise",
    "The 2 a.m. embargo",
    "Monitoring",
    "Federation peers",
    "Publishing channels",
    "Flower SuperLink and SuperNodes",
    "What is not automated",
)


def _guide() -> str:
    return OPERATIONS.read_text(encoding="utf-8")


def _headings(text: str) -> list[str]:
    return re.findall(r"^#{2,3} (.+)$", text, re.MULTILINE)


@pytest.mark.parametrize("section", REQUIRED_SECTIONS)
def test_operations_guide_has_section(section: str) -> None:
    assert section in _headings(_guide())


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_operations_guide_links_resolve() -> None:
    text = _guide()
    anchors = {_anchor(h) for h in _headings(text)}
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, f"#{link} names no heading"


def _node_settings() -> list[str]:
    config = Config(node=NodeSection(name="x"))
    return [f"{s}.{k}" for s, v in msgspec.to_builtins(config).items() for k in v]


@pytest.mark.parametrize("setting", _node_settings())
def test_operations_guide_documents_node_setting(setting: str) -> None:
    assert f"`{setting}`" in _guide()


def test_operations_guide_example_node_toml_is_valid() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _guide(), re.DOTALL)
    examples = [b for b in blocks if b.lstrip().startswith("[node]")]
    assert len(examples) == 1
    config = msgspec.convert(tomllib.loads(examples[0]), Config)
    assert sorted(msgspec.to_builtins(config)) == sorted(tomllib.loads(examples[0]))


_FILESYSTEM = ("/var/", "/etc/", "/opt/", "/srv/", "/usr/", "/run/", "/tmp/", "/home/", "/backups")
_NODE_HOSTS = ("coop.example.org", "peer.example.org", "127.0.0.1:8000")


def _documented_paths() -> set[str]:
    text = re.sub(r"<[^>]*>", "X", _guide())
    paths = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        candidate = re.sub(r"^(GET|POST|PUT|PATCH|DELETE) ", "", span).split()[0]
        if candidate.startswith("/") and not candidate.startswith(_FILESYSTEM):
            paths.add(candidate)
    for host, path in re.findall(r"https?://([\w.:-]+)(/[^\s`'\"|)]*)", text):
        if host in _NODE_HOSTS:
            paths.add(path)
    return paths


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[re.Pattern[str]]]:
    node = make_node(tmp_path_factory.mktemp("routes"))
    try:
        app = create_app(node, background=False)
        patterns = []
        for path in {route.path for route in app.routes}:
            parts = re.split(r"(\{[^}]+\})", path)
            regex = "".join(
                (".+" if part.endswith(":path}") else "[^/]+") if part.startswith("{") else re.escape(part)
                for part in parts
            )
            patterns.append(re.compile(regex))
        yield patterns
    finally:
        node.close()


@pytest.mark.parametrize("path", sorted(_documented_paths()))
def test_operations_guide_names_only_real_endpoints(path: str, routes: list[re.Pattern[str]]) -> None:
    bare = path.rstrip("/") or "/"
    assert any(p.fullmatch(bare) for p in routes) or any(
        p.pattern.startswith(re.escape(bare + "/")) for p in routes
    ), f"no route serves {path}"


def test_operations_guide_names_the_endpoints_an_operator_needs() -> None:
    for path in ("/healthz", "/metrics", "/api/v1/governance/state", "/api/v1/federation/origins/{origin}"):
        assert path in _documented_paths()


def test_entrypoint_calls_only_real_endpoints(routes: list[re.Pattern[str]]) -> None:
    used = re.findall(r"(/api/v1/[a-z/]+|/healthz)", ENTRYPOINT.read_text(encoding="utf-8"))
    assert used
    for path in used:
        assert any(p.fullmatch(path) for p in routes), path
