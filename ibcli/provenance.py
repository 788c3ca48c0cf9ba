"""Where a run came from: the ibcli version and git commit, torch, device and thread count.

Every run ibcli creates (train, mi, plot, sweep) carries these as tags, so a number can be
traced to the code and machine that made it. The thread count matters: float sums are
reduced in a different order with another number of threads, so the same seeded run can
end a little differently (README: "Defaults and what they reach").
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import ibcli

VERSION_TAG = "ibcli.version"
COMMIT_TAG = "ibcli.git_commit"
DIRTY_TAG = "ibcli.git_dirty"
TORCH_TAG = "ibcli.torch_version"
PYTHON_TAG = "ibcli.python_version"
DEVICE_TAG = "ibcli.device"
THREADS_TAG = "ibcli.torch_threads"
GIT_TIMEOUT_S = 2.0


def _git(*args: str) -> str | None:
    """`git args...` in the folder holding the ibcli package; None outside a checkout or on any failure."""
    root = Path(ibcli.__file__).resolve().parent.parent
    if not (root / ".git").exists():  # a directory in a clone, a file in a worktree; absent when installed
        return None
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout ibcli runs from: the full HEAD hash and whether tracked
    files differ from it; (None, None) when ibcli is not run from a git checkout."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (None if status is None else bool(status))


def torch_version() -> str | None:
    """torch's version with its build (`2.14.1+cu130`) when torch is loaded, else the installed
    package's version from its metadata (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.__version__)
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_threads() -> int | None:
    """torch's intra-op thread count in this process (None when torch is not loaded: the stage uses none)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def version_line() -> str:
    """`ibcli 0.1.0` plus the commit when run from a checkout (what `ibcli --version` prints)."""
    commit, dirty = git_state()
    where = f" (git {commit[:12]}{', modified' if dirty else ''})" if commit else ""
    return f"ibcli {ibcli.__version__}{where}"


def provenance_tags(device: str, threads: int | None = None) -> dict[str, str]:
    """The tags every run carries: version, commit and dirty flag (in a checkout), torch and
    Python versions, the device the stage computes on and torch's thread count (`threads`
    when the work runs in other processes, e.g. a sweep's members; else this process's)."""
    commit, dirty = git_state()
    tags = {VERSION_TAG: ibcli.__version__, TORCH_TAG: torch_version(), PYTHON_TAG: platform.python_version(),
            DEVICE_TAG: device, THREADS_TAG: threads if threads is not None else torch_threads(), COMMIT_TAG: commit,
            DIRTY_TAG: None if dirty is None else str(dirty).lower()}
    return {k: str(v) for k, v in tags.items() if v is not None}
