"""`python -m cruddur.healthcheck`: exit 0 when the API on this host answers /api/health.

The container's HEALTHCHECK (and ECS's task health check) run it: the image has no curl,
and the standard library is enough. It asks 127.0.0.1 on PORT (default 4567).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 2.0


def main() -> int:
    port = os.environ.get("PORT", "4567").strip() or "4567"
    url = f"http://127.0.0.1:{port}/api/health"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
