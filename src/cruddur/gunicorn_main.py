"""`python -m cruddur.gunicorn_main ARGS`: gunicorn's command line (`python -m gunicorn`),
what `cruddur serve --server gunicorn` execs into, with a Ctrl-C in its first moments
(while gunicorn and the app are imported, before gunicorn's own handlers are in) taken as
a stop: exit 130, the files `cruddur serve` made removed, no traceback. It printed some
20 lines of KeyboardInterrupt and left the last write's folder behind. (granian's is
cruddur.granian_main.)"""

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__":
    from cruddur.services import last_write
    from cruddur.telemetry.counts_folder import remove_counts_folder

    # gunicorn's workers are forks of this process, and end with sys.exit: through this
    # very frame. Only the main process's end is the server's (a worker's removed the
    # files the others still used, and its replacement failed to boot).
    main = os.getpid()
    try:
        from gunicorn.app.wsgiapp import run

        run(prog="gunicorn")
    except KeyboardInterrupt:
        if os.getpid() != main:
            raise
        sys.exit(128 + signal.SIGINT)
    finally:
        if os.getpid() == main:
            # gunicorn's on_exit (cruddur.gunicorn_config) does this as it ends; before
            # it was in, nothing did.
            last_write.remove(os.environ.get(last_write.ENV))
            remove_counts_folder()
