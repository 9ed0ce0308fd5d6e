"""Marathon: a REST client, app-definition validation, and a local scheduler that speaks Marathon's v2 API.

- :mod:`.client` talks to a real Marathon (``aws``) or to the local scheduler (``local``) alike.
- :mod:`.models` parses Marathon's response bodies (checked against the reference examples).
- :mod:`.validation` refuses invalid app definitions with Marathon's 422 body shape.
- :mod:`.server` is the local scheduler's HTTP front; :mod:`.scheduler` holds its state and deployments,
  :mod:`.tasks` runs task processes, :mod:`.health` runs health checks.
"""

from __future__ import annotations
