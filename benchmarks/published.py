"""The authors' released weights, tested here with the published protocol, next to the published numbers.

Runs every entry of the weights table (m3l.hub.WEIGHTS: each family's entries, m3l/models/<family>.py) whose
file is under ``--weights`` (found by its released file name, checked against the table's sha256) and whose test sets are under ``--data-root``, through the
real command ``python -m m3l.run.test model=M net.pretrained=FILE <the entry's protocol>``, and prints
measured | published | delta for each published number (test set / degradation / metric).

    python benchmarks/published.py --data-root ../shared/data --weights ../shared/weights [--only dncnn_sigma15]
    python benchmarks/published.py ... --ensemble x8      # the same with the x8 self-ensemble: its gain in dB

Writes ``benchmarks/results/published.csv`` (rewritten after each entry, so a long run keeps what it
measured; with ``--only`` or another ``--ensemble``, the other rows are kept) and keeps each run's folder
under ``benchmarks/results/published/<entry>/`` (``<entry>_x8/`` with ``--ensemble x8``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from common import RESULTS

from m3l import hub



def find_file(entry: hub.Weights, weights: Path) -> Path | None:
    """The entry's file under ``weights`` (by its released name), if its sha256 is the table's (the workflow's
    ``weights_dir`` matches files the same way: :func:`m3l.hub.local_weights`)."""
    return hub.local_weights(entry, weights, cache=False)


def missing_sets(entry: hub.Weights, data_root: Path) -> list[str]:
    sets = dict.fromkeys(key.split("/")[0] for key in entry.metrics)
    return [s for s in sets if not (data_root / s).is_dir()]  # a test set's name is its folder's


def measure(entry: hub.Weights, path: Path, data_root: Path, run_dir: Path, ensemble: str) -> pd.DataFrame:
    overrides = [o.replace("{data_root}", str(data_root)) for o in entry.protocol]
    command = [sys.executable, "-m", "m3l.run.test", f"model={entry.model}", f'net.pretrained="{path}"',
               *overrides, f"ensemble={ensemble}", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
               "data.num_workers=0"]
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")
    return pd.read_csv(run_dir / "metrics.csv")


def compare(entry: hub.Weights, metrics: pd.DataFrame, ensemble: str) -> list[dict]:
    rows = []
    for key, published in entry.metrics.items():
        dataset, degradation, metric = key.split("/")
        found = metrics[(metrics.dataset == dataset) & (metrics.degradation == degradation)]
        measured = float(found[metric].iloc[0]) if len(found) and metric in found else float("nan")
        rows.append({"entry": entry.name, "ensemble": ensemble, "file": entry.released_name, "dataset": dataset,
                     "degradation": degradation, "metric": metric, "measured": round(measured, 4),
                     "published": published, "delta": round(measured - published, 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--only", nargs="*", help="entry names (python -m m3l.run.list weights)")
    parser.add_argument("--ensemble", default="none", choices=["none", "x8"], help="test-time self-ensemble")
    args = parser.parse_args()
    out = RESULTS / "published.csv"
    rerun = {e.name for e in hub.WEIGHTS.values() if not args.only or e.name in args.only}
    kept = pd.read_csv(out) if out.is_file() else pd.DataFrame(columns=["entry", "ensemble"])
    if "ensemble" not in kept:  # written before --ensemble existed
        kept.insert(1, "ensemble", "none")
    rows = kept[~(kept.entry.isin(rerun) & (kept.ensemble == args.ensemble))].to_dict("records")
    for entry in hub.WEIGHTS.values():
        if args.only and entry.name not in args.only or not entry.protocol or not entry.metrics:
            continue
        path = find_file(entry, args.weights.resolve())
        missing = missing_sets(entry, args.data_root)
        if path is None or missing:
            print(f"{entry.name}: skipped ({'no ' + entry.released_name if path is None else 'no test set ' + ', '.join(missing)})")
            continue
        start = time.time()
        try:
            run_dir = RESULTS / "published" / (entry.name + ("" if args.ensemble == "none" else f"_{args.ensemble}"))
            metrics = measure(entry, path, args.data_root.resolve(), run_dir, args.ensemble)
        except RuntimeError as error:
            print(f"{entry.name}: m3l.run.test failed: {error}")
            continue
        rows += compare(entry, metrics, args.ensemble)
        print(f"{entry.name}: {time.time() - start:.0f} s", flush=True)
        RESULTS.mkdir(exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False)
    frame = pd.DataFrame(rows)
    if len(frame):
        print(frame.drop(columns="file").to_string(index=False))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
