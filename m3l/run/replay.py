"""Rerun a recorded run: ``python -m m3l.run.replay RESULT/run.yaml [--dry-run]``.

Every run directory holds ``run.yaml`` (see :mod:`m3l.run.runinfo`): the exact command, the resolved
config, the package versions and the git commit of m3l. ``replay`` says how this installation differs
from the record (the m3l commit, a working tree that had uncommitted changes, package versions), then
runs the recorded command in the current folder, so relative paths in it (``hydra.run.dir=...``)
resolve here. To rebuild a result exactly, replay it in a clone of m3l at the recorded commit:

    git clone URL m3l-rerun && cd m3l-rerun && git checkout COMMIT && pip install -e .
    python -m m3l.run.replay /path/to/result/run.yaml

A ``run.yaml`` may come from someone else, so replay runs nothing but ``python -m m3l.run.TASK ARGS`` (TASK one
of m3l's run commands), with this Python, as an argument list (no shell); any other command is refused in one
line. It shows the command, names the overrides in it that choose code (``_target_`` keys, Hydra callbacks and
search path), and asks before running it, unless ``--yes``.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

# The commands a record may hold: m3l's own run modules (replay itself excluded).
TASKS = ("train", "test", "correct", "score", "export", "list")
PYTHONS = re.compile(r"^python(3(\.\d+)?)?$")
# Override keys that choose code to run or where configs come from: shown before asking.
CODE_KEYS = re.compile(r"(^|[./])(_target_|_args_|_partial_|_recursive_)($|[./=])|^hydra[./](callbacks|searchpath)|"
                       r"^hydra/(launcher|sweeper)")


class Refused(ValueError):
    """A record whose command replay does not run."""


def m3l_command(text) -> list[str]:
    """The argument list to run for a recorded command: ``[sys.executable, "-m", "m3l.run.TASK", *overrides]``.

    Refused (:class:`Refused`) unless it is ``python -m m3l.run.TASK ...`` with TASK one of :data:`TASKS`.
    """
    if not isinstance(text, str):
        raise Refused(f"its command is a {type(text).__name__}, not a command line")
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise Refused(f"its command is not a command line ({error})") from None
    if len(words) < 3 or not PYTHONS.match(words[0]) or words[1] != "-m" or \
            words[2] not in {f"m3l.run.{task}" for task in TASKS}:
        raise Refused(f"its command is not python -m m3l.run.{{{','.join(TASKS)}}} ...: {text[:200]!r}")
    return [sys.executable, "-m", words[2], *words[3:]]


def code_choices(command: list[str]) -> list[str]:
    """The overrides of ``command`` that choose code (a ``_target_``, Hydra callbacks, a config search path)."""
    return [arg for arg in command[3:] if CODE_KEYS.search(arg.partition("=")[0].lstrip("+~"))]


def confirmed(prompt: str) -> bool:
    """Ask on the terminal; no answer (no terminal, end of input) is no."""
    print(prompt, end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        return False
    return answer.strip().lower() in ("y", "yes")


def differences(info: dict) -> list[str]:
    """How this installation differs from the one that made the record ``info``."""
    from m3l.run.runinfo import git_state, versions

    notes = []
    git = info.get("git")
    recorded = git.get("m3l") if isinstance(git, dict) else None
    recorded = recorded if isinstance(recorded, dict) else {}
    here = git_state(Path(__file__).resolve().parents[1]) or {}
    if recorded.get("commit") != here.get("commit"):
        notes.append(f"m3l commit: recorded {recorded.get('commit') or 'unknown'}, "
                     f"here {here.get('commit') or 'unknown'}")
    if recorded.get("dirty"):
        notes.append("the recorded m3l working tree had uncommitted changes: the commit alone may not rebuild it")
    installed = versions()
    recorded_versions = info.get("versions")
    for package, version in (recorded_versions.items() if isinstance(recorded_versions, dict) else ()):
        if package != "m3l" and installed.get(package) != version:
            notes.append(f"{package}: recorded {version}, here {installed.get(package, 'not installed')}")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m m3l.run.replay", description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="a run directory's run.yaml (or the directory)")
    parser.add_argument("--dry-run", action="store_true", help="print the differences and the command only")
    parser.add_argument("--yes", "-y", action="store_true", help="run the command without asking")
    args = parser.parse_args(argv)
    record = args.record / "run.yaml" if args.record.is_dir() else args.record
    try:
        info = yaml.safe_load(record.read_text())
        if not isinstance(info, dict) or "command" not in info:
            raise Refused("it holds no command")
        command = m3l_command(info["command"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError, Refused) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
        print(f"m3l replay: error: {record}: not replayed: {reason}", file=sys.stderr)
        return 2
    for note in differences(info):
        print(f"m3l replay: {note}", file=sys.stderr)
    shown = shlex.join(["python", *command[1:]])
    print(f"m3l replay: {shown}", file=sys.stderr)
    code = code_choices(command)
    if code:
        print(f"m3l replay: these overrides choose code to run: {' '.join(code)}", file=sys.stderr)
    if args.dry_run:
        return 0
    if not args.yes and not confirmed(f"m3l replay: run this command in {Path.cwd()}? [y/N] "):
        print("m3l replay: not run (answer y, or pass --yes)", file=sys.stderr)
        return 1
    return subprocess.run(command).returncode


if __name__ == "__main__":
    raise SystemExit(main())
