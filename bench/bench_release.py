"""Release at scale: ``coop release`` over a million accepted public records.

The benchmark makes a data directory with ``coop init`` and ``coop member
add``, then writes N accepted public contributions straight into SQLite in
bulk: licences spread over the three buckets, ``record`` the canonical bytes
of a :class:`coop.governance.Record` built as the pipeline builds it (no raw
submission: it is erased at acceptance), ``record_sha256``, ``dedup_key``, ``accepted_tick``
(and ``ticks.n`` = N).  The bulk rows come from a fast template; on a sample
the template is checked byte for byte against the real path
(``build_submission`` on a request body, then ``pipeline.process_entry``).

Then ``coop release DIR`` runs as a separate process: wall time, and peak RSS
from GNU ``/usr/bin/time`` (its own child's ``ru_maxrss``; ``wait4`` from this
process would report this process's peak, as runs before issue 14 did).  The same is done at a smaller size (``--small``, 100k) so
that "flat memory" shows as a comparison.  Each release is verified:
``sha256sum -c SHA256SUMS``, per-bucket counts summing to N and matching what
was inserted, and each Parquet file's row count equal to its JSONL line count.

    .venv/bin/python bench/bench_release.py [--records 1000000] [--small 100000] [--keep]
        [--baseline /tmp/oldtree/src]

With ``--baseline SRC`` (a tree of older code, e.g. ``git archive HEAD src | tar -x -C
/tmp/oldtree``), each data directory is copied before the cut and the copy is
released by that code (``PYTHONPATH=SRC``), in the same run, beside ours.

Generated data lives under /tmp and is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import msgspec
import pyarrow.parquet as pq

from coop.governance import (
    Attribution,
    AttributionMode,
    Channel,
    Checks,
    Defaults,
    EvalConsent,
    Feedback,
    Label,
    License,
    Message,
    Provenance,
    Record,
    Role,
    Scope,
    Source,
    parse_ai_use,
)
from coop.node.contributions.pipeline import Accepted, dedup_key, process_entry
from coop.node.contributions.submission import ContributionRequest, Submission, build_submission
from coop.node.ids import uuid7
from coop.node.intake.chat import IntakeFormat, Limits, ParsedChat
from coop.node.members.attribution import Contributor, public_identity
from coop.node.storage.datadir import DataDir
from profiling import attach, pyspy_available, summarise
from results import append_section, code_version, command, machine, markdown_table

COOP: Final = Path(sys.executable).parent / "coop"
TIME: Final = Path("/usr/bin/time")  # GNU time: the cut's own peak RSS (see cut())
TERMS: Final = "2026-11"
BUDGET_S: Final = 60.0
_BATCH: Final = 20_000
_SORTED: Final = msgspec.json.Encoder(order="sorted")  # what canonical_bytes writes
_PLAIN: Final = msgspec.json.Encoder()  # what the store writes for a submission

_VOCABULARY: Final = (
    "model answer question context token prompt dataset license member co-op release bucket "
    "training evaluation summary paragraph sentence example function variable python error "
    "request response server client latency throughput cache memory disk network database "
    "table column index query schema migration writer reader commit transaction durable "
    "garden recipe flour butter oven minutes bake bread yeast water salt sugar morning "
    "travel train station ticket city river bridge museum weekend holiday weather rain "
    "explain rewrite translate shorten expand compare list why how what when which could "
    "please thanks sure here is the a an and or but so because although however therefore "
    "first second finally also then next quickly carefully simply clearly really quite"
)
LICENCES: Final = ((License.CC_BY_SA, 5), (License.CC_BY, 3), (License.CC0, 2))
AI_USES: Final = tuple(
    parse_ai_use(text).value.to_header()
    for text in ("train-ai=y, search=y", "train-ai=n, search=y", "train-ai=n;exceptions=cc-cr, search=y")
)
LANGUAGES: Final = ("en", "en", "en", "de", "fr", "pt-BR", None, None)
TAGS: Final = ((), (), (), ("coding",), ("cooking", "baking"), ("travel",))
MODELS: Final = (None, "llama-3.1-8b", "qwen2.5-7b", "mistral-small")


# --- generated contributions ------------------------------------------------------


class Item(msgspec.Struct, frozen=True):
    """One generated contribution: its submission and the request a member would send."""

    submission: Submission
    uid: str
    created_at: int
    request: bytes | None  # a request body producing the same submission (None: has feedback)


class Generator:
    """Seeded contributions from a pool of sentences (ASCII, single spaces: see fast_dedup_key)."""

    def __init__(self, seed: int, *, member: str, pseudonym: str, start: int) -> None:
        self.rng = random.Random(seed)
        words = _VOCABULARY.split()
        self.sentences = [
            " ".join(self.rng.choice(words) for _ in range(self.rng.randint(5, 16))).capitalize() + "."
            for _ in range(20_000)
        ]
        self.mean_sentence = sum(len(x) + 1 for x in self.sentences) / len(self.sentences)
        self.member = member
        self.pseudonym = pseudonym
        self.start = start
        self.licences = [lic for lic, weight in LICENCES for _ in range(weight)]

    def _text(self, size: int) -> str:
        return " ".join(self.rng.choices(self.sentences, k=max(1, round(size / self.mean_sentence))))

    def item(self, n: int) -> Item:
        rng = self.rng
        turns = rng.choice((2, 2, 4, 6))
        text_size = rng.randint(500, 2300) // turns
        model = rng.choice(MODELS)
        messages = tuple(
            Message(role=Role.USER, content=self._text(text_size))
            if i % 2 == 0
            else Message(role=Role.ASSISTANT, content=self._text(text_size), model=model)
            for i in range(turns)
        )
        feedback: tuple[Feedback, ...] = ()
        if rng.random() < 0.15:
            feedback = (Feedback(message_index=1, rating=rng.choice((1, -1)), comment=self._text(60)),)
        licence = rng.choice(self.licences)
        attribution_kind = rng.random()
        if attribution_kind < 0.6:
            attribution, attribution_text = Attribution(AttributionMode.PSEUDONYM, self.pseudonym), None
        elif attribution_kind < 0.85:
            attribution, attribution_text = Attribution(AttributionMode.ANONYMOUS), "anonymous"
        else:
            attribution, attribution_text = Attribution(AttributionMode.USERNAME, self.member), "username"
        note = self._text(80) if rng.random() < 0.1 else None
        correction = self._text(120) if rng.random() < 0.05 else None
        tags = rng.choice(TAGS)
        language = rng.choice(LANGUAGES)
        channel = rng.choice((Channel.API, Channel.API, Channel.CLI, Channel.WEB))
        submission = Submission(
            chat=ParsedChat(
                format=IntakeFormat.MESSAGES,
                messages=messages,
                feedback=feedback,
                model=model,
                models=(model,) if model else (),
            ),
            channel=channel,
            label=rng.choice((Label.GOOD, Label.GOOD, Label.FAIL)),
            license=licence,
            ai_use=rng.choice(AI_USES),
            eval=rng.choice((EvalConsent.YES, EvalConsent.YES, EvalConsent.NO)),
            scope=Scope.PUBLIC,
            attribution=attribution,
            terms_version=TERMS,
            note=note,
            correction=correction,
            tags=tags,
            language=language,
            source=Source.NATURAL,
        )
        # Thirty seconds apart, oldest first: seq order is time order, as on a real node.
        created_at = self.start + 30 * n
        uid = uuid7(created_at * 1_000_000_000 + n, rng.randbytes(10))
        request = None
        if not feedback:  # the messages format cannot carry feedback
            body: dict[str, object] = {
                "label": submission.label.value,
                "consent": True,
                "format": "messages",
                "content": {"messages": [msgspec.to_builtins(m) for m in messages]},
                "license": licence.value,
                "ai_use": submission.ai_use,
                "eval": submission.eval.value,
                "scope": "public",
                "note": note,
                "correction": correction,
                "tags": list(tags),
                "language": language,
                "channel": channel.value,
            }
            if attribution_text is not None:
                body["attribution"] = attribution_text
            request = _PLAIN.encode({k: v for k, v in body.items() if v is not None})
        return Item(submission=submission, uid=uid, created_at=created_at, request=request)


def fast_dedup_key(messages: tuple[Message, ...]) -> str:
    """``pipeline.dedup_key`` for generated text (ASCII, single spaces, no outer spaces).

    NFKC and whitespace folding are the identity on such text and casefold is
    lower(); the sample check compares the two.
    """
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.role.value.encode())
        digest.update(b"\x1f")
        digest.update(message.content.lower().encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def template_record(item: Item, contributor: Contributor, salt: bytes) -> tuple[bytes, str, str]:
    """(record bytes, record sha256, dedup key) as process_entry makes them for clean text."""
    sub = item.submission
    attribution, contributor_hash = public_identity(sub.attribution, contributor, salt)
    messages, feedback = sub.chat.messages, sub.chat.feedback
    conversation = _SORTED.encode({"messages": messages, "feedback": feedback})
    record = Record(
        uid=item.uid,
        created_at=item.created_at,
        route=sub.channel,
        model=sub.chat.model or next((m.model for m in messages if m.model), None),
        models=sub.chat.models,
        content=messages,
        feedback=feedback,
        label=sub.label,
        note=sub.note,
        correction=sub.correction,
        tags=sub.tags,
        language=sub.language,
        license=sub.license,
        ai_use=sub.ai_use,
        eval=sub.eval,
        attribution=attribution,
        contributor_hash=contributor_hash,
        scope=sub.scope,
        provenance=Provenance(
            source=sub.source,
            prompt_shown=sub.prompt_shown,
            format=sub.chat.format.value,
            checks=Checks(pii={}, content_sha256=hashlib.sha256(conversation).hexdigest()),
        ),
    )
    data = _SORTED.encode(record)
    return data, hashlib.sha256(data).hexdigest(), fast_dedup_key(messages)


def check_sample(generator: Generator, count: int, contributor: Contributor, salt: bytes) -> str:
    """Compare the fast template with the node's own path on ``count`` items; raise on a difference."""
    via_request = 0
    for n in range(count):
        item = generator.item(-1 - n)  # negative n: not part of the inserted rows
        if item.request is not None:
            built, _ = build_submission(
                msgspec.json.decode(item.request, type=ContributionRequest),
                channel=Channel.API,
                username=generator.member,
                pseudonym=generator.pseudonym,
                defaults=Defaults(),
                terms_version=TERMS,
                limits=Limits(),
                max_note_chars=10_000,
            )
            if built != item.submission:
                raise SystemExit(f"sample {n}: build_submission gives\n{built}\nnot\n{item.submission}")
            via_request += 1
        outcome = process_entry(
            _PLAIN.encode(item.submission),
            uid=item.uid,
            created_at=item.created_at,
            contributor=contributor,
            salt=salt,
            threshold=5,
        )
        if not isinstance(outcome, Accepted) or outcome.pii:
            raise SystemExit(f"sample {n}: process_entry did not accept it cleanly: {outcome}")
        data, sha, key = template_record(item, contributor, salt)
        expected = (outcome.record_bytes, outcome.record_sha256, outcome.dedup_key)
        if (data, sha, key) != expected or key != dedup_key(item.submission.chat.messages):
            raise SystemExit(f"sample {n}: the template differs from process_entry")
    return (
        f"template checked on {count} items against process_entry (byte-identical records), "
        f"{via_request} of them also built by build_submission from a request body"
    )


# --- the data directory --------------------------------------------------------------


class Populated(msgspec.Struct, frozen=True):
    records: int
    per_licence: dict[str, int]
    seconds: float
    db_bytes: int
    mean_record_bytes: float
    sample_note: str


def populate(root: Path, records: int, *, seed: int, sample: int) -> Populated:
    started = time.monotonic()
    subprocess.run([str(COOP), "init", str(root), "--name", "bench-release"], check=True, capture_output=True)
    subprocess.run([str(COOP), "member", "add", str(root), "bench"], check=True, capture_output=True)
    conn = sqlite3.connect(root / "coop.sqlite3", isolation_level=None)
    try:
        member_id, name, chash, pseudonym = conn.execute(
            "SELECT id, name, contributor_hash, pseudonym FROM members WHERE name = 'bench'"
        ).fetchone()
        salt = DataDir(root).salt()
        contributor = Contributor(member_hash=chash, handle=name)
        now = int(time.time())
        generator = Generator(seed, member=name, pseudonym=pseudonym, start=now - 30 * records)
        sample_note = check_sample(generator, sample, contributor, salt)
        generator = Generator(seed, member=name, pseudonym=pseudonym, start=now - 30 * records)
        # A bulk load straight into the database file (no WAL to copy twice), WAL again at the end.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -256000")
        per_licence: Counter[str] = Counter()
        record_bytes = 0

        def rows() -> Iterator[tuple[object, ...]]:
            nonlocal record_bytes
            for n in range(records):
                item = generator.item(n)
                sub = item.submission
                data, sha, key = template_record(item, contributor, salt)
                per_licence[sub.license.value] += 1
                record_bytes += len(data)
                yield (
                    n + 1,
                    item.uid,
                    member_id,
                    sub.channel.value,
                    item.created_at,
                    item.created_at + 5,
                    sub.label.value,
                    sub.license.value,
                    sub.ai_use,
                    sub.scope.value,
                    sub.eval.value,
                    sub.language,
                    json.dumps(list(sub.tags)),
                    _PLAIN.encode(sub),
                    data,
                    sha,
                    key,
                    n + 1,
                )

        source = rows()
        for done in range(0, records, _BATCH):
            batch = [next(source) for _ in range(min(_BATCH, records - done))]
            conn.execute("BEGIN")
            # The row, and its record beside it in `contents`: an accepted row's raw submission is
            # erased at acceptance (as the node does since issue 10).
            conn.executemany(
                "INSERT INTO contributions (seq, uid, member_id, state, channel, created_at, updated_at, label,"
                " license, ai_use, scope, eval, language, tags, record_sha256, dedup_key, pii, accepted_tick)"
                " VALUES (?, ?, ?, 'accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?)",
                (row[:13] + row[15:] for row in batch),
            )
            conn.executemany(
                "INSERT INTO contents (seq, submission, record) VALUES (?, NULL, ?)",
                ((row[0], row[14]) for row in batch),
            )
            conn.execute("COMMIT")
            if (done // _BATCH) % 10 == 9:
                print(f"  {done + _BATCH:,} rows ({time.monotonic() - started:.0f} s)", flush=True)
        conn.execute("UPDATE ticks SET n = ? WHERE id = 1", (records,))
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    return Populated(
        records=records,
        per_licence=dict(per_licence),
        seconds=time.monotonic() - started,
        db_bytes=(root / "coop.sqlite3").stat().st_size,
        mean_record_bytes=record_bytes / max(records, 1),
        sample_note=sample_note,
    )


# --- the release -------------------------------------------------------------------------


class Cut(msgspec.Struct, frozen=True):
    seconds: float
    peak_rss_bytes: int
    version: str
    output_bytes: int
    wal_left_bytes: int  # the WAL the cut's process left behind (not checkpointed)


def cut(
    root: Path, logs: Path, *, timeout: float, profile_out: Path | None = None, src: Path | None = None
) -> Cut:
    """``coop release DIR`` in its own process: wall time and peak RSS (from wait4); ``src``: the
    code to run instead of ours (on PYTHONPATH)."""
    out_path, err_path = logs / f"{root.name}.out", logs / f"{root.name}.err"
    sampler = None
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.monotonic()
        args, env = [str(COOP), "release", str(root)], None
        if src is not None:
            launcher = "import sys; from coop.node.cli import main; sys.argv[0] = 'coop'; sys.exit(main())"
            args = [sys.executable, "-c", launcher, "release", str(root)]
            env = {**os.environ, "PYTHONPATH": str(src)}
        # Through /usr/bin/time: a child's ru_maxrss starts at its parent's high-water mark (fork
        # and exec carry it over), so wait4 on a child of this process reports at least this
        # process's own peak (hundreds of MiB after generating the rows), not the cut's.
        rss_path = logs / f"{root.name}.maxrss"
        if TIME.exists():
            args = [str(TIME), "-f", "%M", "-o", str(rss_path), *args]
        proc = subprocess.Popen(args, stdout=out, stderr=err, start_new_session=True, env=env)
        if profile_out is not None:
            sampler = attach(proc.pid, profile_out)
        # Bounded: the process group is killed if the cut outlives the timeout.
        watchdog = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if sampler is not None:
        try:
            sampler.wait(timeout=60)  # py-spy stops once its target has exited
        except subprocess.TimeoutExpired:
            os.killpg(sampler.pid, signal.SIGTERM)
            sampler.wait(timeout=10)
    if proc.returncode != 0:
        raise SystemExit(f"coop release failed ({proc.returncode}): {err_path.read_text()[-2000:]}")
    version = out_path.read_text().strip()
    folder = root / "releases" / version
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    wal = root / "coop.sqlite3-wal"
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    # ru_maxrss is in kilobytes on Linux.
    return Cut(
        seconds=seconds,
        peak_rss_bytes=(int(rss_path.read_text().split()[-1]) if TIME.exists() else usage.ru_maxrss) * 1024,
        version=version,
        output_bytes=size,
        wal_left_bytes=wal_bytes,
    )


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            count += chunk.count(b"\n")
    return count


def verify(root: Path, result: Cut, populated: Populated) -> list[str]:
    """sha256sum -c, bucket counts against what was inserted, Parquet rows against JSONL lines."""
    folder = root / "releases" / result.version
    problems: list[str] = []
    sums = subprocess.run(
        ["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    files = len((folder / "SHA256SUMS").read_text().splitlines())
    if sums.returncode != 0:
        problems.append(f"sha256sum -c failed: {sums.stdout}{sums.stderr}")
    summary = msgspec.json.decode((folder / "release.json").read_bytes())
    buckets = {b["license"]: b["records"] for b in summary["buckets"]}
    if buckets != populated.per_licence:
        problems.append(f"bucket counts {buckets} != inserted {populated.per_licence}")
    if sum(buckets.values()) != populated.records or summary["records"] != populated.records:
        problems.append(f"buckets sum to {sum(buckets.values())}, release says {summary['records']}")
    pairs = []
    for bucket in summary["buckets"]:
        jsonl = _lines(folder / bucket["name"] / "data.jsonl")
        parquet = pq.ParquetFile(folder / bucket["name"] / "data.parquet").metadata.num_rows
        pairs.append(f"{bucket['name']} {parquet:,}/{jsonl:,}")
        if jsonl != parquet or jsonl != bucket["records"]:
            problems.append(
                f"{bucket['name']}: {parquet} Parquet rows, {jsonl} JSONL lines, {bucket['records']} in release.json"
            )
    lines = [
        f"sha256sum -c SHA256SUMS: {'OK' if sums.returncode == 0 else 'FAILED'} ({files} files)",
        f"buckets sum to {sum(buckets.values()):,} = {populated.records:,} inserted, per licence equal: "
        f"{'OK' if buckets == populated.per_licence else 'NO'}",
        "Parquet rows / JSONL lines: " + ", ".join(pairs) + (": OK" if not problems else ""),
    ]
    return lines + [f"PROBLEM: {p}" for p in problems]


# --- the benchmark ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the big release")
    parser.add_argument(
        "--small", type=int, default=100_000, help="records in the comparison release (0: skip it)"
    )
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--sample", type=int, default=300, help="items checked against process_entry")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a cut is killed")
    parser.add_argument(
        "--profile", action="store_true", help="attach py-spy to the big cut (wall-clock samples)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated data directories")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument(
        "--baseline", type=Path, help="a src/ tree of older code: it cuts a copy of each data dir too"
    )
    args = parser.parse_args(argv)
    sizes = [n for n in (args.small, args.records) if 0 < n < args.records] + [args.records]

    began = time.monotonic()
    code = code_version()  # src/ may change while we run: note what we started with
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="coop-bench-release-", dir="/tmp"))
    print(f"seed {args.seed}; sizes {', '.join(f'{n:,}' for n in sizes)}; work dir {work}")
    results: list[tuple[Populated, Cut, list[str]]] = []
    baselines: list[tuple[Populated, Cut, list[str]]] = []
    profile_lines: list[str] = []
    try:
        for size in sizes:
            root = work / f"node-{size}"
            print(f"generating {size:,} accepted public records ...", flush=True)
            populated = populate(root, size, seed=args.seed, sample=args.sample)
            print(
                f"  {populated.sample_note}\n  {size:,} rows in {populated.seconds:.0f} s; "
                f"database {populated.db_bytes / 1e9:.2f} GB; mean record {populated.mean_record_bytes:,.0f} B",
                flush=True,
            )
            if args.baseline is not None:
                copy = work / f"baseline-{size}"
                subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
                print(f"baseline coop release ({size:,} records, {args.baseline}) ...", flush=True)
                old = cut(copy, work, timeout=args.timeout, src=args.baseline)
                baselines.append((populated, old, verify(copy, old, populated)))
                print(
                    f"  baseline: {old.seconds:.1f} s, peak RSS {old.peak_rss_bytes / 2**20:,.0f} MiB",
                    flush=True,
                )
                shutil.rmtree(copy, ignore_errors=True)
            print(f"coop release ({size:,} records) ...", flush=True)
            profile_out = None
            if args.profile and size == args.records:
                problem = pyspy_available()
                if problem:
                    profile_lines = [f"profile skipped: {problem}"]
                else:
                    profile_out = work / "profile-release.txt"
                    print("  (py-spy attached: 50 Hz, idle time included)", flush=True)
            result = cut(root, work, timeout=args.timeout, profile_out=profile_out)
            checks = verify(root, result, populated)
            results.append((populated, result, checks))
            print(
                f"  {result.version}: {result.seconds:.1f} s, peak RSS {result.peak_rss_bytes / 2**20:,.0f} MiB, "
                f"{size / result.seconds:,.0f} records/s, output {result.output_bytes / 1e9:.2f} GB"
            )
            print("\n".join(f"  {line}" for line in checks), flush=True)
            print(f"  WAL left behind by the cut: {result.wal_left_bytes / 1e9:.2f} GB", flush=True)
            if profile_out is not None and profile_out.exists():
                profile_lines = summarise(
                    profile_out.read_text(), what="samples of the main thread", thread="MainThread"
                )
                print("\n".join(profile_lines))
            shutil.rmtree(root / "releases", ignore_errors=True)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - began

    table = markdown_table(
        [
            "code",
            "records",
            "database",
            "mean record",
            "release time",
            "records/s",
            "peak RSS",
            "output",
            "WAL left",
            "within 60 s",
        ],
        [
            [
                code_name,
                f"{p.records:,}",
                f"{p.db_bytes / 1e9:.2f} GB",
                f"{p.mean_record_bytes:,.0f} B",
                f"{c.seconds:.1f} s",
                f"{p.records / c.seconds:,.0f}",
                f"{c.peak_rss_bytes / 2**20:,.0f} MiB",
                f"{c.output_bytes / 1e9:.2f} GB",
                f"{c.wal_left_bytes / 1e9:.2f} GB",
                "yes" if c.seconds <= BUDGET_S else "NO",
            ]
            for code_name, runs in (("baseline", baselines), ("ours", results))
            for p, c, _ in runs
        ],
    )
    ok = all(
        not any(line.startswith("PROBLEM") for line in checks) for _, _, checks in [*results, *baselines]
    )
    memory = ""
    if len(results) > 1:
        small, big = results[0][1], results[-1][1]
        memory = (
            f"- peak RSS {results[-1][0].records:,} vs {results[0][0].records:,} records: "
            f"{big.peak_rss_bytes / small.peak_rss_bytes:.2f}x "
            f"({big.peak_rss_bytes / 2**20:,.0f} vs {small.peak_rss_bytes / 2**20:,.0f} MiB)"
        )
    for (p, old, _), (_, new, _) in zip(baselines, results, strict=True):
        memory = (memory + "\n" if memory else "") + (
            f"- ours / baseline at {p.records:,} records: peak RSS {new.peak_rss_bytes / old.peak_rss_bytes:.2f}x "
            f"({new.peak_rss_bytes / 2**20:,.0f} vs {old.peak_rss_bytes / 2**20:,.0f} MiB), "
            f"time {new.seconds / old.seconds:.2f}x ({new.seconds:.1f} vs {old.seconds:.1f} s)"
        )
    per_licence = results[-1][0].per_licence
    summary = [
        f"- data: seed {args.seed}; accepted public records, licences "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(per_licence.items()))
        + "; rows hold the redacted record only (raw submissions are erased at acceptance)",
        f"- {results[-1][0].sample_note}",
        "- time: wall clock of `coop release DIR` as its own process (start to exit, including the"
        " final database update that marks the records released); peak RSS of the cut process alone (GNU time %M; wait4 from the bench carried the bench's own peak over, so runs before issue 14 report ~560 MiB whatever the cut)",
        *([memory] if memory else []),
        f"- load average when the run began: {load_before:.2f}; wall time of the whole run "
        f"(generation included): {elapsed:.0f} s",
    ]
    print()
    print(table)
    print()
    print("\n".join(summary))
    if not args.no_record:
        section = [
            f"- command: `{command(__file__)}`",
            f"- machine: {machine()}",
            f"- code at start: {code}",
            *summary,
            "",
            table,
            "",
        ]
        for populated, _, checks in results:
            section.append(f"- checks at {populated.records:,}: " + "; ".join(checks))
        for populated, _, checks in baselines:
            section.append(f"- baseline checks at {populated.records:,}: " + "; ".join(checks))
        if profile_lines:
            section += [
                "",
                f"py-spy attached to the {args.records:,}-record cut (50 Hz, idle included):",
                "",
                "```",
            ]
            section += [*profile_lines, "```"]
        print(f"\nappended to {append_section('Release at scale', section)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
