"""The relay benchmark's baseline: the cost floor of HTTP on this machine.

A bare starlette app on uvicorn with the relay's uvicorn settings (h11, no lifespan, no access
log, the same keep-alive and concurrency limits) whose one route parses the JSON body with orjson
and answers 202: no auth, no normalizing, no queue. Prints ``listening on http://127.0.0.1:PORT``
on stderr, like ``canopycli relay``; SIGTERM stops it.

    python bench/http_floor.py
"""

from __future__ import annotations

import socket
import sys

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def profiles(request: Request) -> Response:
    data = orjson.loads(await request.body())
    n = len(data) if isinstance(data, list) else 1
    return Response(orjson.dumps({"accepted": n, "rejected": []}), 202, media_type="application/json")


def main() -> None:
    app = Starlette(routes=[Route("/v1/segments/{segment}/profiles", profiles, methods=["POST"])])
    # As the relay's bind(): IPPROTO_TCP, so asyncio sets TCP_NODELAY on each connection
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = uvicorn.Config(
        app,
        http="h11",
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=5,
        timeout_graceful_shutdown=30,
        limit_concurrency=2048,
    )
    print(f"http floor: listening on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
