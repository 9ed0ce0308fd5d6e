"""Make ``platform_services`` importable from the source tree (the deployed apps use the built wheel)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
