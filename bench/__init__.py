"""The benchmark harness (run.py) and the apps it serves (hello_app.py, hello_plain.py)."""
