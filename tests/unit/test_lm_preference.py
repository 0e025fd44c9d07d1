"""lm-preference on a tiny random GPT-2 built offline: shards add up, NLLs match the model's own loss, bad folders are refused."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")

from coop.eval.errors import ArtifactError, EvaluatorFailedError  # noqa: E402 - after the skips
from coop.eval.evaluators import LmPreference  # noqa: E402
from coop.governance import (  # noqa: E402
    Attribution,
    AttributionMode,
    Channel,
    Checks,
    EvalConsent,
    Label,
    License,
    Message,
    Provenance,
    Record,
    Role,
    Scope,
    Source,
)

SEED = int(os.environ.get("COOP_TEST_SEED", "20260522"))
WORDS = ["hello", "thanks", "the", "cat", "sat", "on", "mat", "python", "code", "runs", "fails", "why", "how"]
Packer = Callable[[Path], bytes]


def make_record(messages: Sequence[tuple[Role, str]], label: Label) -> Record:
    return Record(
        uid="r",
        created_at=1_700_000_000,
        route=Channel.API,
        model=None,
        content=tuple(Message(role=role, content=text) for role, text in messages),
        label=label,
        license=License.CC0,
        ai_use="train-ai=n",
        eval=EvalConsent.YES,
        attribution=Attribution(AttributionMode.ANONYMOUS),
        contributor_hash="0" * 64,
        scope=Scope.NODE,
        provenance=Provenance(
            source=Source.NATURAL, prompt_shown=False, format="text", checks=Checks(pii={}, content_sha256="")
        ),
    )


def chats(rng: random.Random, count: int) -> list[Record]:
    out = []
    for _ in range(count):
        turns = [
            (role, " ".join(rng.choices(WORDS, k=rng.randint(1, 9))))
            for role in [Role.USER, Role.ASSISTANT] * rng.randint(1, 3)
        ]
        out.append(make_record(turns, rng.choice(list(Label))))
    return out


def add(stats: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer GPT-2 with random weights and a word-level tokenizer, saved as Hugging Face does."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    tokenizer.train_from_iterator([" ".join(WORDS), "user: assistant: system:"], trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(SEED)
    config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=64, vocab_size=tokenizer.get_vocab_size(), bos_token_id=0
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def tar_gz(folder: Path, *, top: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.iterdir()):
            archive.add(path, arcname=top + path.name)
    return buffer.getvalue()


def zipped(folder: Path, *, top: str = "", extra: Mapping[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, top + path.name)
        for name, body in (extra or {}).items():
            archive.writestr(name, body)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def records() -> list[Record]:
    print(f"seed {SEED} (set COOP_TEST_SEED to replay)")
    return chats(random.Random(SEED), 60)


def test_lm_preference_five_shards_sum_to_pooled_statistics_exactly(
    model_dir: Path, records: list[Record]
) -> None:
    evaluator = LmPreference()
    model = evaluator.load(tar_gz(model_dir))
    rng = random.Random(SEED + 1)
    shards: list[list[Record]] = [[] for _ in range(5)]
    for record in records:
        shards[rng.randrange(5)].append(record)
    federated = add(evaluator.statistics(model, shard) for shard in shards)
    pooled = evaluator.statistics(model, records)
    assert federated == pooled
    assert evaluator.finalize(federated) == evaluator.finalize(pooled)
    assert pooled["n"] == pooled["scored"] == len(records)


def reference_nll(model_dir: Path, record: Record) -> tuple[int, float]:
    """(tokens, mean NLL) of the assistant turns from the model's own loss over a masked transcript."""
    tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    model = transformers.GPT2LMHeadModel.from_pretrained(model_dir, local_files_only=True)
    ids: list[int] = []
    labels: list[int] = []
    for message in record.content:
        for text, scored in ((f"{message.role.value}: ", False), (message.content, True), ("\n", False)):
            piece = tokenizer.encode(text, add_special_tokens=False).ids
            ids += piece
            labels += piece if scored and message.role is Role.ASSISTANT else [-100] * len(piece)
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
    return sum(1 for label in labels[1:] if label != -100), float(loss)


def test_lm_preference_nll_matches_the_models_own_loss(model_dir: Path, records: list[Record]) -> None:
    evaluator = LmPreference()
    model = evaluator.load(zipped(model_dir))
    metrics = evaluator.finalize(evaluator.statistics(model, records))
    reference = [reference_nll(model_dir, record) for record in records]
    tokens = sum(count for count, _ in reference)
    mean_nll = sum(count * nll for count, nll in reference) / tokens
    assert metrics["tokens"] == tokens
    assert metrics["mean_nll"] == pytest.approx(mean_nll, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(mean_nll), rel=1e-4)
    goods = [nll for (_, nll), r in zip(reference, records, strict=True) if r.label is Label.GOOD]
    fails = [nll for (_, nll), r in zip(reference, records, strict=True) if r.label is Label.FAIL]
    wins = sum(1.0 if g < f else 0.5 if g == f else 0.0 for g in goods for f in fails)
    # Scores are binned to 0.01 nat, so a few close pairs tie that the raw floats would split.
    assert metrics["preference_accuracy"] == pytest.approx(wins / (len(goods) * len(fails)), abs=0.05)


@pytest.mark.parametrize(
    "pack",
    [
        pytest.param(lambda d: tar_gz(d, top="tiny/"), id="tar-with-a-top-folder"),
        pytest.param(lambda d: zipped(d, top="./"), id="zip-with-dot-slash"),
        pytest.param(lambda d: zipped(d, extra={"README.md": b"# tiny"}), id="zip-with-a-readme"),
    ],
)
def test_lm_preference_reads_the_same_model_however_packed(
    model_dir: Path, records: list[Record], pack: Packer
) -> None:
    evaluator = LmPreference()
    expected = evaluator.statistics(evaluator.load(tar_gz(model_dir)), records[:10])
    assert evaluator.statistics(evaluator.load(pack(model_dir)), records[:10]) == expected


def test_lm_preference_counts_a_chat_without_assistant_turns_but_does_not_score_it(model_dir: Path) -> None:
    evaluator = LmPreference()
    model = evaluator.load(tar_gz(model_dir))
    stats = evaluator.statistics(model, [make_record([(Role.USER, "hello")], Label.GOOD)])
    assert (stats["n"], stats["scored"], stats["tokens"]) == (1, 0, 0)


def test_lm_preference_long_chat_is_cut_at_the_context_window(model_dir: Path) -> None:
    evaluator = LmPreference()
    model = evaluator.load(tar_gz(model_dir))
    long = make_record([(Role.USER, "why"), (Role.ASSISTANT, " ".join(["cat"] * 500))], Label.FAIL)
    stats = evaluator.statistics(model, [long])
    # n_positions (64) less the context before the first scored token: user : why assistant :
    assert stats["tokens"] == 64 - 5
    assert stats["tokens"] <= evaluator.statistic_sensitivity()["tokens"]


def test_lm_preference_model_crashing_while_scoring_raises_evaluator_failed(model_dir: Path) -> None:
    def broken(**_: object) -> object:
        raise RuntimeError("out of memory, pretend")

    evaluator = LmPreference()
    model = dataclasses.replace(evaluator.load(tar_gz(model_dir)), model=broken)
    chat = make_record([(Role.USER, "why"), (Role.ASSISTANT, "the cat")], Label.GOOD)
    with pytest.raises(EvaluatorFailedError) as caught:
        evaluator.statistics(model, [chat])
    assert isinstance(caught.value.cause, RuntimeError)
    assert caught.value.__cause__ is caught.value.cause


def _edited_config(folder: Path, **changes: object) -> dict[str, bytes]:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    return {"config.json": json.dumps(config).encode()}


def _replaced(folder: Path, replacements: Mapping[str, bytes | None]) -> bytes:
    """A zip of the folder with some files replaced (None drops one) or added."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            if path.name not in replacements:
                archive.write(path, path.name)
        for name, body in replacements.items():
            if body is not None:
                archive.writestr(name, body)
    return buffer.getvalue()


def _nan_weights(folder: Path) -> dict[str, bytes]:
    from safetensors.torch import load, save

    state = load((folder / "model.safetensors").read_bytes())
    state["transformer.ln_f.weight"] = torch.full_like(state["transformer.ln_f.weight"], float("nan"))
    return {"model.safetensors": save(state)}


def _big_tokenizer() -> dict[str, bytes]:
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    words = [f"word{i}" for i in range(100)]
    tokenizer.train_from_iterator(
        [" ".join(words)], tokenizers.trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    return {"tokenizer.json": tokenizer.to_str().encode()}


def _with_symlink(folder: Path) -> bytes:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar_gz(folder))) as source,
        tarfile.open(fileobj=out, mode="w") as archive,
    ):
        for member in source:
            archive.addfile(member, source.extractfile(member))
        link = tarfile.TarInfo("weights-link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        pytest.param(lambda d: b"neither zip nor tar", "neither", id="not-an-archive"),
        pytest.param(
            lambda d: _replaced(d, {"pytorch_model.bin": b"\x80\x04pickle"}),
            "pickled",
            id="pickled-bin-weights",
        ),
        pytest.param(lambda d: _replaced(d, {"model.safetensors": None}), "safetensors", id="no-weights"),
        pytest.param(lambda d: _replaced(d, {"config.json": None}), "config.json", id="no-config"),
        pytest.param(lambda d: _replaced(d, {"tokenizer.json": None}), "tokenizer.json", id="no-tokenizer"),
        pytest.param(lambda d: _replaced(d, {"config.json": b"{not json"}), "JSON", id="config-not-json"),
        pytest.param(
            lambda d: _replaced(d, {"config.json": b'{"model_type": "no-such-architecture"}'}),
            "causal LM",
            id="unknown-architecture",
        ),
        pytest.param(
            lambda d: _replaced(d, _edited_config(d, auto_map={"AutoModelForCausalLM": "x.Y"})),
            "own code",
            id="needs-remote-code",
        ),
        pytest.param(lambda d: _replaced(d, _edited_config(d, n_embd=64)), "do not fit", id="wrong-shapes"),
        pytest.param(
            lambda d: _replaced(d, _edited_config(d, vocab_size=4)), "do not fit", id="vocab-size-changed"
        ),
        pytest.param(
            lambda d: _replaced(d, _big_tokenizer()), "embeds", id="tokenizer-bigger-than-the-model"
        ),
        pytest.param(
            lambda d: _replaced(d, {"model.safetensors": b"\x08\x00\x00\x00garbage"}),
            "safetensors",
            id="corrupt-weights",
        ),
        pytest.param(lambda d: _replaced(d, _nan_weights(d)), "NaN", id="nan-weights"),
        pytest.param(
            lambda d: _replaced(d, {"tokenizer.json": b'{"nope": 1}'}), "tokenizer", id="bad-tokenizer"
        ),
        pytest.param(_with_symlink, "links", id="tar-with-a-symlink"),
    ],
)
def test_lm_preference_bad_artifact_raises_artifact_error(
    model_dir: Path, make: Callable[[Path], bytes], complaint: str
) -> None:
    with pytest.raises(ArtifactError) as caught:
        LmPreference().load(make(model_dir))
    assert complaint in caught.value.message
