"""Exercise 2 (docs/walkthrough.md, section 6): add a route.

Make GET /time answer with the server's time as JSON, {"time": <time.time()>}, next to the
demo site:

    PYTHONPATH=docs/exercises minginx-cffi serve --app time_app:app --root minginx_cffi/site --trace

Check with `make exercise N=2`.
"""

from minginx_cffi import App

app = App()


# your route here
