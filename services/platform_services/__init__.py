"""The reference platform: an orders API (:mod:`.api`) and a fulfilment worker (:mod:`.worker`).

Both read their configuration from environment variables only (:mod:`.config`); see docs/platform.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
