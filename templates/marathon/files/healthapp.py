"""A small HTTP app of the platform's own making, deployed until the reference platform lands.

GET /health -> 200 "ok"; GET /version -> JSON: the SHA, image and ids this task was started with
(from the environment Marathon gives every task). Listens on 127.0.0.1:$PORT0. Standard library only.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/health":
            body, ctype = b"ok", "text/plain"
        elif self.path == "/version":
            image = os.environ.get("MARATHON_APP_DOCKER_IMAGE", "")
            body = json.dumps({
                "sha": os.environ.get("GIT_SHA"),
                "image": image,
                "image_tag": image.rpartition(":")[2] if ":" in image else None,
                "app_id": os.environ.get("MARATHON_APP_ID"),
                "app_version": os.environ.get("MARATHON_APP_VERSION"),
                "task_id": os.environ.get("MESOS_TASK_ID"),
            }).encode()
            ctype = "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT0"])), Handler).serve_forever()
