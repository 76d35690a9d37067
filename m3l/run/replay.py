"""Rerun a recorded run: ``python -m m3l.run.replay RESULT/run.yaml [--dry-run]``.

Every run directory holds ``run.yaml`` (see :mod:`m3l.runinfo`): the exact command, the resolved
config, the package versions and the git commit of m3l. ``replay`` says how this installation differs
from the record (the m3l commit, a working tree that had uncommitted changes, package versions), then
runs the recorded command in the current folder, so relative paths in it (``hydra.run.dir=...``)
resolve here. To rebuild a result exactly, replay it in a clone of m3l at the recorded commit:

    git clone URL m3l-rerun && cd m3l-rerun && git checkout COMMIT && pip install -e .
    python -m m3l.run.replay /path/to/result/run.yaml
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import yaml


def differences(info: dict) -> list[str]:
    """How this installation differs from the one that made the record ``info``."""
    from m3l.runinfo import git_state, versions

    notes = []
    recorded = (info.get("git") or {}).get("m3l") or {}
    here = git_state(Path(__file__).resolve().parents[1]) or {}
    if recorded.get("commit") != here.get("commit"):
        notes.append(f"m3l commit: recorded {recorded.get('commit') or 'unknown'}, "
                     f"here {here.get('commit') or 'unknown'}")
    if recorded.get("dirty"):
        notes.append("the recorded m3l working tree had uncommitted changes: the commit alone may not rebuild it")
    installed = versions()
    for package, version in (info.get("versions") or {}).items():
        if package != "m3l" and installed.get(package) != version:
            notes.append(f"{package}: recorded {version}, here {installed.get(package, 'not installed')}")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3l.run.replay", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a run directory's run.yaml (or the directory)")
    parser.add_argument("--dry-run", action="store_true", help="print the differences and the command only")
    args = parser.parse_args(argv)
    record = args.record / "run.yaml" if args.record.is_dir() else args.record
    try:
        info = yaml.safe_load(record.read_text())
        command = shlex.split(info["command"])
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        print(f"m3l replay: error: {record} is not a run.yaml with a command ({error})", file=sys.stderr)
        return 2
    for note in differences(info):
        print(f"m3l replay: {note}", file=sys.stderr)
    print(f"m3l replay: {info['command']}", file=sys.stderr)
    if args.dry_run:
        return 0
    return subprocess.run([sys.executable, *command[1:]] if command[0] == "python" else command).returncode


if __name__ == "__main__":
    raise SystemExit(main())
