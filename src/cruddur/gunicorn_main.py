"""`python -m cruddur.gunicorn_main ARGS`: gunicorn's command line (`python -m gunicorn`),
what `cruddur serve --server gunicorn` execs into, run as cruddur.main_process runs a
server's main process (a Ctrl-C while it imports, its clean-up; granian's is
cruddur.granian_main)."""

from __future__ import annotations


def _serve() -> None:
    from gunicorn.app.wsgiapp import run

    run(prog="gunicorn")


if __name__ == "__main__":
    from cruddur.main_process import run_main_process

    run_main_process(_serve)
