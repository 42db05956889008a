"""The HTTP floor: a bare ASGI app under uvicorn that only parses the JSON body and answers.

No model, no validation, no framework: what one Python process can do at best with the same
request bodies. The benchmark reports it so Truce's REST numbers can be read against it.

    python -m uvicorn loadtests.bench.floor_app:app --no-access-log --log-level warning
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_ANSWER = b'{"model_name":"floor","outputs":[]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER))]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Read the whole body, ``orjson.loads`` it, answer a fixed small JSON."""
    if scope["type"] != "http":
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    status = 200
    try:
        orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        status = 400
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})
