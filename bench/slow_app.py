"""The slow-beside case (bench/run.py --workload slow-beside): a handler that blocks beside a fast one.

    minginx-cffi serve --workers 1 --root DIR --app bench.slow_app:app
/slow sleeps 2 s in the handler (as a database or HTTP call would block it), /fast
answers at once, and every other path is --root's static files.
"""

import time

from minginx_cffi import App

SLOW_SECONDS = 2.0

app = App()


@app.route("/slow")
def slow(request):
    time.sleep(SLOW_SECONDS)
    return "slow"


@app.route("/fast")
def fast(request):
    return "fast"
