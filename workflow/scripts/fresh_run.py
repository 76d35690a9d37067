"""Before training: keep the run folder's checkpoints only if they come from the same settings.

``python fresh_run.py RUN_DIR ARGS...``: if ``RUN_DIR/run.yaml`` records other overrides than ``ARGS`` (the
model's settings changed), delete ``RUN_DIR/checkpoints`` so that ``resume=auto`` starts over instead of resuming a
run of other settings. A raised budget (``trainer.max_epochs`` / ``trainer.max_steps`` at least the recorded run's)
is not a change: the checkpoints stay and ``resume=auto`` continues the run. A lowered one starts over (the
checkpoints went past it). The compute threads (``threads=``, snakemake's ``{threads}``) are not a setting either.
"""

import math
import shlex
import shutil
import sys
from pathlib import Path

import yaml

BUDGET = ("trainer.max_epochs", "trainer.max_steps")
SPEED = ("threads",)  # the job's compute threads (snakemake's {threads}): the same run on more or fewer cores


def split(words):
    """The overrides without the budget keys, and the budget keys' values as given."""
    others, budget = [], {}
    for word in words:
        key, _, value = word.partition("=")
        if key.lstrip("+~") in SPEED:
            continue
        if key.lstrip("+~") in BUDGET:
            budget[key.lstrip("+~")] = value
        else:
            others.append(word)
    return others, budget


def amount(value):
    """A budget as a number: none (null, -1) is unlimited; None if it is not a number."""
    if value is None or str(value).strip().lower() in ("null", "none", "-1"):
        return math.inf
    try:
        return int(str(value))
    except ValueError:
        return None


def recorded_budget(config, key):
    """``key`` (trainer.max_epochs) in a run.yaml's resolved config."""
    section, _, leaf = key.partition(".")
    node = (config or {}).get(section) if isinstance(config, dict) else None
    return node.get(leaf) if isinstance(node, dict) else None


def same_run(record, args):
    """Whether the run recorded in ``record`` (run.yaml) and ``python -m m3l.run.train ARGS`` are the same run but
    for a budget at least as large."""
    words = shlex.split(str(record.get("command") or ""))
    if words[:3] != ["python", "-m", "m3l.run.train"]:
        return False
    old, old_budget = split(words[3:])
    new, new_budget = split(args)
    if old != new:
        return False
    for key in BUDGET:
        if key not in new_budget:
            if key in old_budget:  # back to the model's default: unknown here, start over
                return False
            continue
        before, after = amount(recorded_budget(record.get("config"), key)), amount(new_budget[key])
        if before is None or after is None or after < before:
            return False
    return True


def main(run_dir, args):
    record_path = run_dir / "run.yaml"
    if not record_path.is_file():
        return
    try:
        record = yaml.safe_load(record_path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        record = {}
    if not isinstance(record, dict) or not same_run(record, args):
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        print(f"{run_dir}: settings changed since the last run, training starts over")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
