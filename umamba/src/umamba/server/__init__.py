"""`umamba serve`: an HTTP server that runs `umamba predict` / `umamba train` jobs for remote clients.

Layout of the server's data folder (`--data-dir`):
    token            the bearer token made on first start (0600), unless --token-file names others
    jobs.db          the job store (SQLite): jobs, their steps and every progress event
    models/          the server's model store (`umamba models --store DATA/models`; trained models land here)
    jobs/<id>/       one folder per job: inputs/, outputs/, upload/ and workspace/ (training), log.txt (stderr)

The server process never imports torch: every job is a `python -m umamba ... --progress-json` subprocess.
"""

# The HTTP interface's version. A client talks to a server with the same API version; umamba versions may differ.
API_VERSION = 1
