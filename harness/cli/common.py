"""What every command module shares: JSON on stdout."""

import json
import sys


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
