"""The published preset's weights job for a released file found under ``weights_dir``: converted to m3l's layout
with its entry's class and layout (m3l/hub.py's table), as ``python -m m3l.hub convert ENTRY OUT`` converts the
downloaded file, and checked by loading it into the net it implies before it is written.

    python workflow/scripts/weights.py ENTRY FILE OUT
"""

from __future__ import annotations

import sys

from m3l import hub
from m3l.errors import M3LError


def main(argv: list[str]) -> int:
    name, path, out = argv
    entry = hub.WEIGHTS[name]
    try:
        converted = hub.convert_file(path, entry.target, entry.layout)
        hub.check_converted(converted)
        digest = hub.write(converted, out)
    except M3LError as error:
        print(f"weights: error: {error}", file=sys.stderr)
        return 2
    print(f"{out}\nentry: {entry.name}\nfile: {path}\nlayout: {converted.layout}\nsha256: {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
