"""Before training: keep the run folder's checkpoints only if they come from the same command.

``python fresh_run.py RUN_DIR ARGS...``: if ``RUN_DIR/run.yaml`` records another command than
``python -m m3l.run.train ARGS...`` (the model's settings changed), delete ``RUN_DIR/checkpoints`` so
that ``resume=auto`` starts over instead of resuming a run of other settings.
"""

import shutil
import sys
from pathlib import Path

import yaml

from m3l.runinfo import command

run_dir, args = Path(sys.argv[1]), sys.argv[2:]
record = run_dir / "run.yaml"
if record.is_file() and (yaml.safe_load(record.read_text()) or {}).get("command") != command("train", args):
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    print(f"{run_dir}: settings changed since the last run, training starts over")
