"""What joint actions cost where it matters: the disclosure policy per record, and a node's intake
of gossiped actions.

1. **Policy per record.** ``disclose`` over the same random records for a peer, the public and
   an eval run, under a collective state without joint rules (the baseline, as before issue 15)
   and with the rules a busy federation could bind a co-op with (three embargo selectors and an
   eval-only start): microseconds per call and the ratio.
2. **Intake of gossiped actions.** A :class:`coop.federation.joint.JointBook` receiving
   ``--actions`` signed actions (4 per proposer, 64 per message, each with one co-signature),
   beside the floor any receiver pays: checking each envelope's signatures alone
   (``open_action`` / ``open_statement``); then ``rules()`` over what it holds.

    .venv/bin/python bench/bench_joint.py [--records 200000] [--actions 1024] [--no-record]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from coop.federation.joint import (
    JointAction,
    JointBook,
    JointKind,
    JointSelector,
    JointStatement,
    MemoryJointStore,
    make_action,
    make_statement,
    open_action,
    open_statement,
)
from coop.governance import AttributionMode, EvalConsent, JointRules, License, Scope, Signer
from coop.governance.disclosure import (
    Audience,
    CollectiveState,
    RecordFacts,
    RecordState,
    disclose,
)
from results import append_section, code_version, command, machine, markdown_table

NOW = 1_790_000_000
DAY = 86_400
TAGS = ("tax", "law", "health", "farm", "picket", "code", "care", "rent")


def _records(n: int, rng: random.Random) -> list[RecordFacts]:
    return [
        RecordFacts(
            uid=f"r{i}",
            scope=rng.choice((Scope.PUBLIC, Scope.PUBLIC, Scope.FEDERATION)),
            license=rng.choice(list(License)),
            ai_use="train-ai=y",
            eval=EvalConsent.YES,
            attribution=rng.choice(list(AttributionMode)),
            state=RecordState.RELEASED,
            admitted=True,
            tags=tuple(rng.sample(TAGS, rng.randint(0, 3))),
            language=rng.choice(("en", "en-GB", "id", "de", None)),
            created_at=NOW - rng.randint(0, 200) * DAY,
            origin=rng.choice((None, "a" * 64)),
        )
        for i in range(n)
    ]


def _per_call(records: list[RecordFacts], state: CollectiveState, audience: Audience, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for facts in records:
            disclose(facts, state, audience, requester="a" * 64)
        best = min(best, time.perf_counter() - start)
    return best / len(records) * 1e6


def policy_rows(n: int, repeat: int) -> list[list[str]]:
    records = _records(n, random.Random(15))
    federation = frozenset({"a" * 64, "b" * 64})
    plain = CollectiveState(federation=federation)
    joint = CollectiveState(
        federation=federation,
        joint=JointRules(
            embargoes=(
                JointSelector(tags=("picket", "rent")),
                JointSelector(languages=("id",)),
                JointSelector(licenses=(License.CC0,)),
            ),
            eval_only_since=NOW - 30 * DAY,
            actions=("1" * 64, "2" * 64, "3" * 64),
        ),
    )
    rows = []
    for audience in (Audience.PEER, Audience.PUBLIC, Audience.EVAL):
        base = _per_call(records, plain, audience, repeat)
        ours = _per_call(records, joint, audience, repeat)
        rows.append([audience.value, f"{base:.2f}", f"{ours:.2f}", f"{ours / base:.2f}x"])
    return rows


def _documents(n_actions: int) -> tuple[list[bytes], list[bytes], dict[str, str]]:
    proposers = [Signer(i.to_bytes(4, "big") * 8) for i in range(1, n_actions // 4 + 2)]
    keys = {s.public_key.hex(): s.public_key.hex() for s in proposers}
    actions, statements = [], []
    for index in range(n_actions):
        signer = proposers[index // 4]
        partner = proposers[index // 4 + 1]
        me, other = signer.public_key.hex(), partner.public_key.hex()
        action = make_action(
            JointAction(
                proposer=me,
                kind=JointKind.EMBARGO,
                selector=JointSelector(tags=("picket",)),
                reason="No AI training on picket-line chats until the contract talks end. " * 4,
                starts_at=NOW,
                ends_at=NOW + 60 * DAY,
                threshold=2,
                coops=tuple(sorted((me, other))),
                created_at=NOW,
                nonce=f"{index:032x}",
            ),
            signer,
        )
        actions.append(action)
        opened = open_action(action, keys, now=NOW)
        statements.append(
            make_statement(
                JointStatement(action=opened.id, coop=me, decision="sign", at=NOW, via="admin"), signer
            )
        )
    return actions, statements, keys


def intake_rows(n_actions: int) -> list[list[str]]:
    actions, statements, keys = _documents(n_actions)
    start = time.perf_counter()
    for action, statement in zip(actions, statements, strict=True):
        opened = open_action(action, keys, now=NOW)
        open_statement(statement, opened, keys)
    floor = time.perf_counter() - start
    book = JointBook(MemoryJointStore(), keys=lambda: keys, clock=lambda: NOW)
    start = time.perf_counter()
    for first in range(0, n_actions, 64):
        book.receive(actions[first : first + 64], statements[first : first + 64])
    received = time.perf_counter() - start
    held = len(book.views())
    start = time.perf_counter()
    book.rules(now=NOW)
    rules = time.perf_counter() - start
    per = 1e6 / n_actions
    return [
        [
            f"{n_actions:,}",
            f"{held:,}",
            f"{floor * per:.0f}",
            f"{received * per:.0f}",
            f"{received / floor:.2f}x",
            f"{rules * 1e3:.1f}",
        ]
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--actions", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    code = code_version()
    policy = markdown_table(
        ["audience", "no joint rules (us/record)", "3 selectors + eval-only (us/record)", "ratio"],
        policy_rows(args.records, args.repeat),
    )
    intake = markdown_table(
        [
            "actions sent",
            "kept",
            "signatures alone (us/action)",
            "book receive (us/action)",
            "ratio",
            "rules() (ms)",
        ],
        intake_rows(args.actions),
    )
    notes = [
        f"- policy: `disclose` over {args.records:,} random records (best of {args.repeat}), same run;"
        " baseline = a collective state without joint rules",
        "- intake: 4 actions per proposer, one co-signature each, 64 per gossip message, in memory;"
        " baseline = verifying each action's and statement's signatures alone; the book keeps at most"
        " 4 pending actions per proposer and 1,000 live in all (the rest are refused for now)",
    ]
    print(policy, intake, *notes, sep="\n\n")
    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            *notes,
            "",
            policy,
            "",
            intake,
        ]
        print(f"\nappended to {append_section('Joint actions: policy cost and gossip intake', section)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
