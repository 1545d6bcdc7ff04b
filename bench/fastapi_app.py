"""The FastAPI hello case (bench/run.py --workload fastapi-hello): plain text from a FastAPI route.

The same module for every ASGI server, from bench/.venv (requirements.txt):
    minginx-cffi serve --asgi bench.fastapi_app:app
    uvicorn --loop uvloop --http httptools bench.fastapi_app:app
    granian --interface asgi bench.fastapi_app:app
"""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/hello", response_class=PlainTextResponse)
async def hello():  # async: a sync route would go through anyio's thread pool
    return PlainTextResponse("hello")
