"""The module granian's worker processes load: `cruddur.worker:create_worker_app`.

granian forks its workers after installing its own SIGINT/SIGTERM handlers in the main
process. Until a worker has loaded the app and installed its own, it keeps that inherited
handler, which only sets a flag in the worker's copy of the main process's state: a stop
signal in that window was lost, the worker went on to serve, and the main process waited
for it forever (1 Ctrl-C in 4 right after start-up). So before the slow imports this
module restores the default actions: a worker told to stop while loading simply exits.
granian installs its graceful handlers once the app is loaded. (It lives outside
`cruddur.api` because importing that package is the slow part.)
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.SIG_DFL)

from cruddur.api import create_worker_app  # noqa: E402

__all__ = ["create_worker_app"]
