"""Errors of the data set loaders."""

from __future__ import annotations

from pathlib import Path

#: What a user runs to install the offline data sets (see deploy/datasets.sh).
INSTALL_HINT = "run `make datasets` (or `bash deploy/datasets.sh`) to install it"


class DatasetMissingError(FileNotFoundError):
    """A data set's files are not installed (or not where we look).

    The message names the data set, every place searched and the command that
    installs it, so a user can fix it without reading code.
    """

    def __init__(
        self, dataset: str, searched: list[Path], *, env_var: str, detail: str = ""
    ) -> None:
        self.dataset = dataset
        self.searched = searched
        self.env_var = env_var
        places = ", ".join(str(p) for p in searched) or "(nowhere)"
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"data set {dataset!r} is not installed{extra}; looked in: {places}. "
            f"To fix it, {INSTALL_HINT}, or set {env_var} to the folder that holds it."
        )

    def __str__(self) -> str:  # FileNotFoundError's default adds errno noise
        return str(self.args[0])


class DatasetFormatError(ValueError):
    """A data set file exists but is not what the loader expects (corrupt or another version)."""
