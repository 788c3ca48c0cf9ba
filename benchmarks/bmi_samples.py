"""Make the cache of the 40 tasks of Czyz et al. 2023 (runs under the project venv).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bmi_samples.py [--seeds 0 1 2] [--cache DIR]

1. If the cache already holds every (task, seed) wanted, stop: nothing else is needed.
2. Otherwise make the benchmark's own venv if absent (default `<repo>/.venv-bmi`, Python 3.11, the
   exact pins of `benchmarks/bmi-requirements.txt` from PyPI: the first set-up needs the network).
   The benchmark's package (`benchmark-mi`, import `bmi`) pins jax 0.4.x and numpy 1.26, so it is
   never an ibcli dependency.
3. Run `benchmarks/bmi_generate.py` in that venv into the cache (default `<repo>/.cache/bmi`, or
   $BMI_CACHE), which keeps the files already there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bmi_tasks import DEFAULT_CACHE, sample_path  # noqa: E402

REPO = HERE.parent
REQUIREMENTS = HERE / "bmi-requirements.txt"
N_TASKS = 40


def cache_complete(cache: Path, seeds: list[int]) -> bool:
    """True when index.json lists 40 tasks and every (task, seed) file is present."""
    index = cache / "index.json"
    if not index.is_file():
        return False
    tasks = json.loads(index.read_text())["tasks"]
    return len(tasks) == N_TASKS and all(
        sample_path(cache, t["task_id"], s).is_file() for t in tasks for s in seeds
    )


def ensure_venv(venv: Path, python: str) -> Path:
    """The venv's interpreter, after creating the venv and installing the pins if they changed."""
    bin_python = venv / "bin" / "python"
    stamp = venv / ".installed-bmi"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if bin_python.exists() and stamp.is_file() and stamp.read_text().strip() == digest:
        return bin_python
    if not bin_python.exists():
        print(f"# creating {venv} with {python}", file=sys.stderr)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    print(f"# installing {REQUIREMENTS.name} into {venv} (needs the network the first time)", file=sys.stderr)
    subprocess.run([str(bin_python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([str(bin_python), "-c", "import bmi.benchmark"], check=True)
    stamp.write_text(digest + "\n")
    return bin_python


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"output folder (default {DEFAULT_CACHE}; $BMI_CACHE overrides)")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv-bmi", help="the benchmark's venv")
    parser.add_argument("--python", default="python3.11", help="interpreter to create the venv with")
    args = parser.parse_args(argv)

    if cache_complete(args.cache, args.seeds):
        print(f"# {args.cache}: all {N_TASKS} tasks x seeds {args.seeds} present", file=sys.stderr)
        return 0
    try:
        python = ensure_venv(args.venv, args.python)
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"error: could not set up the bmi venv {args.venv}: {err}", file=sys.stderr)
        return 2
    cmd = [str(python), str(HERE / "bmi_generate.py"), "--out", str(args.cache),
           "--seeds", *map(str, args.seeds)]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    raise SystemExit(main())
