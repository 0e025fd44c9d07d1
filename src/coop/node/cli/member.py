"""A member's commands against a running node, with their own token: login, contribute, withdraw,
mine, correct, vote.  They go through :mod:`coop.node.client`, never the data directory."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from coop.node.cli.exits import Exit, UsageError
from coop.node.cli.exports import Chat, select_chats, split_export
from coop.node.cli.options import member_options, output_options
from coop.node.cli.output import Progress, print_json
from coop.node.cli.tokens import member_client, read_token_file, store_token

__all__ = ["COMMANDS", "Chat", "split_export"]


@click.command("login")
@click.argument("url", metavar="URL")
@click.option(
    "--token-file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="read the token from FILE (default: asked for on the terminal, or read from stdin)",
)
@output_options
def login(url: str, token_file: Path | None, as_json: bool, quiet: bool) -> int:
    """Keep your member token for the node at URL in your config directory (mode 0600), so that
    member commands with --node URL need no --token.  The token is checked with the node first."""
    from coop.node.client import NodeClient, check_node_url
    from coop.node.errors import InputError

    try:
        base = check_node_url(url, field="URL")
    except InputError as exc:
        raise UsageError(exc.message, field="URL") from None
    if token_file is not None:
        token = read_token_file(token_file)
    elif sys.stdin.isatty():
        token = click.prompt("member token", hide_input=True).strip()
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise UsageError("no token given", field="--token-file")
    with NodeClient(base, token) as client:
        me = client.get_json("/api/v1/me")
    path = store_token(base, token)
    if as_json:
        print_json({"node": base, "name": me.get("name"), "role": me.get("role"), "file": str(path)})
    else:
        print(f"signed in to {base} as {me.get('name')} (token kept in {path})")
    return 0


# -- contribute --------------------------------------------------------------------------------


@dataclass
class Tally:
    new: int = 0
    duplicate: int = 0
    skipped: int = 0  # chats without messages
    refused: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        total = self.new + self.duplicate + len(self.refused) + self.skipped
        line = f"{total} chats: {self.new} new, {self.duplicate} duplicate, {len(self.refused)} refused"
        return line + (f", {self.skipped} skipped: no messages" if self.skipped else "")


@click.command("contribute")
@click.argument("file", metavar="FILE")
@member_options
@click.option(
    "--label", required=True, type=click.Choice(["good", "fail"]), help="was the answer good or a fail"
)
@click.option("--consent", is_flag=True, help="you agree to the co-op's terms (required)")
@click.option(
    "--license", "license_", type=click.Choice(["CC0-1.0", "CC-BY-4.0", "CC-BY-SA-4.0"]), help="your licence"
)
@click.option("--ai-use", metavar="EXPR", help="e.g. 'train-ai=n;exceptions=cc-cr, search=y'")
@click.option("--eval", "eval_", type=click.Choice(["y", "n"]), help="allow federated evaluation over it")
@click.option("--scope", type=click.Choice(["node", "federation", "public"]), help="how far it may travel")
@click.option("--attribution", metavar="MODE", help="username, pseudonym:NAME or anonymous")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["openwebui", "messages", "text"]),
    help="the file's format (default: detected)",
)
@click.option("--note", help="a note for the co-op")
@click.option("--correction", help="what the right answer would have been")
@click.option("--tag", multiple=True, help="a tag (repeatable)")
@click.option("--language", help="BCP 47 tag, e.g. en or pt-BR")
@click.option("--chat-id", multiple=True, metavar="ID", help="share only this chat of an export (repeatable)")
@click.option("--pick", is_flag=True, help="choose the chats of an export on the terminal")
@output_options
def contribute(
    file: str,
    node_url: str,
    token: str | None,
    token_file: Path | None,
    label: str,
    consent: bool,
    license_: str | None,
    ai_use: str | None,
    eval_: str | None,
    scope: str | None,
    attribution: str | None,
    fmt: str | None,
    note: str | None,
    correction: str | None,
    tag: tuple[str, ...],
    language: str | None,
    chat_id: tuple[str, ...],
    pick: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """Share chats from FILE ('-' for standard input): an Open WebUI export (each chat its own
    contribution), text or messages JSON.  Rate limits are waited out; a rerun is safe: chats
    already shared are reported as duplicates."""
    from coop.node.errors import InputError
    from coop.node.intake.chat import IntakeFormat
    from coop.node.intake.formats import detect_format

    if not consent:
        raise InputError("--consent is required: it says you agree to the co-op's terms", field="--consent")
    if ai_use is not None:
        from coop.governance import parse_ai_use

        # Refuse a typo here, before anything is sent: it must never drop an opt-out.
        parse_ai_use(ai_use, field="--ai-use", strict=True)
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}", field="FILE") from None
    kind = IntakeFormat(fmt) if fmt else detect_format(data)
    # A file that cannot be read fails here, before anything is sent; in an export, each chat
    # is read on its own (a broken one is refused, the others are shared).
    chats = select_chats(split_export(data, kind), chat_id, pick)
    if chats and all(chat.empty for chat in chats):
        raise InputError(f"none of the {len(chats)} chats has any messages", field="FILE")
    options: dict[str, object] = {
        "label": label,
        "consent": True,
        "channel": "cli",
        "format": kind.value,
        "license": license_,
        "ai_use": ai_use,
        "eval": eval_,
        "scope": scope,
        "attribution": attribution,
        "note": note,
        "correction": correction,
        "tags": list(tag),
        "language": language,
    }
    options = {k: v for k, v in options.items() if v is not None}
    progress = Progress(quiet=quiet, as_json=as_json)
    bulk = len(chats) > 1
    results: list[dict[str, Any]] = []
    tally = Tally()
    with member_client(node_url, token, token_file, progress=progress) as client:
        for n, chat in enumerate(chats, start=1):
            if chat.empty:
                tally.skipped += 1
            elif chat.problem is not None:  # cannot be read: refused here, not sent
                if not bulk:
                    raise InputError(chat.problem)
                tally.refused.append((chat.shown, chat.problem))
                results.append({"chat_id": chat.chat_id, "title": chat.title, "refused": chat.problem})
                progress(f"refused {chat.shown}: {chat.problem}")
            else:
                _share(
                    client, chat, options, kind, bulk=bulk, results=results, tally=tally, progress=progress
                )
            progress.count(n, len(chats), "sharing chats")
    _report_contributions(results, tally, as_json=as_json, bulk=bulk)
    return Exit.PARTIAL if tally.refused else 0


def _share(
    client: Any,
    chat: Chat,
    options: dict[str, object],
    kind: Any,
    *,
    bulk: bool,
    results: list[dict[str, Any]],
    tally: Tally,
    progress: Progress,
) -> None:
    """Send one chat; a refusal of it (a 4xx) is tallied in a bulk import, raised otherwise."""
    import msgspec

    from coop.node.errors import InputError
    from coop.node.intake.chat import IntakeFormat

    content: object = msgspec.Raw(chat.document) if kind is not IntakeFormat.TEXT else chat.document.decode()
    # The body holds the chat itself and the member's choices, never how the chat was picked
    # (--chat-id, --pick, all): the same chat with the same choices gets the same key, so a
    # rerun is safe whichever chats it selects.
    body = msgspec.json.encode({**options, "content": content})
    key = "cli-" + hashlib.sha256(body).hexdigest()[:40]
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    try:
        response = client.request("POST", "/api/v1/contributions", content=body, headers=headers, upload=True)
    except InputError as exc:  # refused for this chat (a 4xx naming a field): the others go on
        if not bulk:
            raise
        tally.refused.append((chat.shown, exc.message))
        results.append({"chat_id": chat.chat_id, "title": chat.title, "refused": exc.message})
        progress(f"refused {chat.shown}: {exc.message}")
        return
    item = response.json()
    item.setdefault("chat_id", chat.chat_id)
    results.append(item)
    if item.get("created", True):
        tally.new += 1
    else:
        tally.duplicate += 1


def _report_contributions(results: list[dict[str, Any]], tally: Tally, *, as_json: bool, bulk: bool) -> None:
    if as_json:
        print_json(results)
    else:
        for item in results:
            if "refused" in item:
                continue
            again = "" if item.get("created", True) else " (already shared)"
            print(f"{item['uid']} {item['state']}{again}")
            for notice in item.get("notices", []):
                print(f"  note: {notice}", file=sys.stderr)
    if bulk:
        for shown, reason in tally.refused:
            sys.stderr.write(f"coop: refused {shown}: {reason}\n")
        if not as_json:
            sys.stderr.write(tally.summary() + "\n")


# -- the member's own contributions ---------------------------------------------------------------


@click.command("withdraw")
@click.argument("uid", metavar="UID")
@member_options
@output_options
def withdraw(
    uid: str, node_url: str, token: str | None, token_file: Path | None, as_json: bool, quiet: bool
) -> int:
    """Withdraw one of your contributions UID (erased; excluded from releases)."""
    with member_client(node_url, token, token_file) as client:
        item = client.request("DELETE", f"/api/v1/contributions/{uid}").json()
    if as_json:
        print_json(item)
    else:
        print(f"{item['uid']} {item['state']}")
    return 0


def chat_title(item: dict[str, Any]) -> str:
    """What tells a member's chats apart: the title, else the first line of the first user message."""
    title = item.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip().splitlines()[0]
    messages = item.get("messages") or (item.get("content") or {}).get("messages") or []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("role") == "user":
            text = str(message.get("content") or "").strip()
            if text:
                return text.splitlines()[0][:80]
    return str(item.get("uid", ""))


@click.command("mine")
@member_options
@click.option(
    "--export", metavar="FILE", type=click.Path(path_type=Path), help="write every contribution as JSON lines"
)
@output_options
def mine(
    node_url: str, token: str | None, token_file: Path | None, export: Path | None, as_json: bool, quiet: bool
) -> int:
    """List your contributions on a node (with each chat's title), or download them all (--export FILE)."""
    with member_client(node_url, token, token_file) as client:
        if export is not None:
            response = client.request("GET", "/api/v1/me/contributions.jsonl", upload=True)
            export.write_bytes(response.content)
            print(f"wrote {export}")
            return 0
        items = client.get_json("/api/v1/me/contributions")
    if as_json:
        print_json(items)
        return 0
    for item in items:
        released = f" in {item['released_in']}" if item.get("released_in") else ""
        print(
            f"{item['uid']}  {item['state']}{released}  {item['label']}  {item['license']}  {chat_title(item)}"
        )
    if not items:
        print("no contributions yet: coop contribute FILE --node URL --label good|fail --consent")
    return 0


@click.command("correct")
@click.argument("uid", metavar="UID")
@member_options
@click.option("--text", help="what the right answer would have been")
@click.option(
    "--file",
    "text_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="read the correction from FILE ('-' for standard input)",
)
@click.option("--label", type=click.Choice(["good", "fail"]), help="also change the label")
@click.option("--note", help="also change the note")
@output_options
def correct(
    uid: str,
    node_url: str,
    token: str | None,
    token_file: Path | None,
    text: str | None,
    text_file: Path | None,
    label: str | None,
    note: str | None,
    as_json: bool,
    quiet: bool,
) -> int:
    """Correct one of your contributions UID: before release in place, after release as a new
    record that replaces it."""
    import msgspec

    from coop.node.errors import InputError

    if text is not None and text_file is not None:
        raise UsageError("give the correction with --text or --file, not both", field="--text")
    if text_file is not None:
        try:
            text = sys.stdin.read() if str(text_file) == "-" else text_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {text_file}: {exc}", field="--file") from None
    change = {k: v for k, v in {"correction": text, "label": label, "note": note}.items() if v is not None}
    if not change:
        raise UsageError("say what to correct: --text, --file, --label or --note", field="--text")
    with member_client(node_url, token, token_file) as client:
        item = client.request(
            "PATCH",
            f"/api/v1/contributions/{uid}",
            content=msgspec.json.encode(change),
            headers={"Content-Type": "application/json"},
        ).json()
    if as_json:
        print_json(item)
    else:
        replaced = f" (replaces {item['replaces']})" if item.get("replaces") else ""
        print(f"{item['uid']} {item['state']}{replaced}")
        for notice in item.get("notices", []):
            print(f"  note: {notice}", file=sys.stderr)
    return 0


@click.command("vote")
@click.argument("proposal", metavar="ID", type=int)
@click.argument("choice", type=click.Choice(["yes", "no", "abstain"]))
@member_options
@output_options
def vote(
    proposal: int,
    choice: str,
    node_url: str,
    token: str | None,
    token_file: Path | None,
    as_json: bool,
    quiet: bool,
) -> int:
    """Cast your vote on proposal ID (as the member whose token this is: an admin cannot vote for you)."""
    import msgspec

    from coop.node.cli.governance import show_proposal
    from coop.node.collective.proposals import ProposalView

    with member_client(node_url, token, token_file) as client:
        response = client.request(
            "POST", f"/api/v1/governance/proposals/{proposal}/votes", json={"choice": choice}
        )
    view = msgspec.json.decode(response.content, type=ProposalView)
    if as_json:
        print_json(view)
    else:
        show_proposal(view)
    return 0


COMMANDS: list[click.Command] = [login, contribute, withdraw, mine, correct, vote]
