"""A small OpenAI-compatible chat server for the language-mind tests, on a free 127.0.0.1 port: canned decisions
read off the prompt (bless a ritual awaiting a blessing, take an unclaimed task, reply in the agent's thread,
propose a ritual, post on a goal), or a failure on demand. It counts requests and the calls in flight at once.

``dialect`` makes it refuse the ``response_format`` forms a kind of server refuses, with a 400 as that server words
it (``DIALECTS``); ``usage`` says how it counts the tokens a reply reports: ``words`` (of the request and the
reply) or ``chars`` (a token per four characters of the messages, and of the reply, as a tokenizer roughly does).
``billed`` sums the tokens of the replies it sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

MODES = ("ok", "malformed", "envelope", "429", "500", "hang")
# what each kind of server refuses in ``response_format`` (it takes the rest), and how it says so
DIALECTS = ("any", "llama", "openai", "object", "plain")
_REFUSALS = {
    "llama": 'response_format type must be one of "text" or "json_object", but got: json_schema',
    "openai": "Unknown parameter: 'response_format.schema'.",
    "object": 'response_format: only {"type": "json_object"} is supported, with no schema',
    "plain": "response_format is not supported by this server",
}


class FakeModel:
    """``mode``: ok (a decision), malformed (prose, not JSON), envelope (a 200 that is no chat completion), 429,
    500, hang (never answers). ``delay``: seconds each answer takes (the server's own work, not a test's wait)."""

    def __init__(self, mode: str = "ok", *, delay: float = 0.0, dialect: str = "any", usage: str = "words") -> None:
        assert mode in MODES and dialect in DIALECTS and usage in ("words", "chars")
        self.mode = mode
        self.delay = delay
        self.dialect = dialect
        self.usage = usage
        self.requests = 0
        self.refused = 0  # requests refused for their response_format
        self.billed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorization: set[str] = set()  # the Authorization headers seen
        self._server: asyncio.Server | None = None
        self._stopped = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeModel:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            await asyncio.gather(*self._handlers, return_exceptions=True)  # each sees its connection end
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            while not self._stopped.is_set():
                request = await reader.readline()
                if not request:
                    break
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                    elif name.strip().lower() == "authorization":
                        self.authorization.add(value.strip())
                body = json.loads(await reader.readexactly(length)) if length else {}
                self.requests += 1
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    status, payload = await self._answer(body)
                finally:
                    self.in_flight -= 1
                if status == 0:  # hang: never answer
                    await self._stopped.wait()
                    break
                data = payload.encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
                    .encode() + data
                )  # fmt: skip
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(handler)
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError):
                writer.close()

    async def _answer(self, body: dict[str, Any]) -> tuple[int, str]:
        self.bodies.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._refuses(body.get("response_format")):
            self.refused += 1
            error = {"message": _REFUSALS[self.dialect], "type": "invalid_request_error", "code": 400}
            return 400, json.dumps({"error": error})
        match self.mode:
            case "hang":
                return 0, ""
            case "429":
                return 429, '{"error": "slow down"}'
            case "500":
                return 500, '{"error": "the model fell over"}'
            case "envelope":
                return 200, "this is no chat completion"
            case "malformed":
                content = "I think I shall rest a while and watch the tide."
            case _:
                content = json.dumps(decide(body["messages"][0]["content"], body["messages"][1]["content"]))
        if self.usage == "chars":
            chars = sum(len(message["content"]) for message in body["messages"])
            prompt_tokens, completion_tokens = -(-chars // 4), -(-len(content) // 4)
        else:
            prompt_tokens, completion_tokens = len(str(body).split()), len(content.split())
        self.billed += prompt_tokens + completion_tokens
        reply = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
        }
        return 200, json.dumps(reply)

    def _refuses(self, shape: dict[str, Any] | None) -> bool:
        """Whether this kind of server refuses a request carrying ``response_format`` ``shape`` (None: none)."""
        if shape is None or self.dialect == "any":
            return False
        match self.dialect:
            case "llama":  # takes json_object, with or without a schema
                return bool(shape.get("type") != "json_object")
            case "openai":  # takes json_schema and json_object, but no schema beside json_object
                return "schema" in shape
            case "object":
                return shape != {"type": "json_object"}
            case _:  # plain: no response_format at all
                return True


@contextlib.contextmanager
def threaded(mode: str = "ok", *, delay: float = 0.0) -> Iterator[FakeModel]:
    """A ``FakeModel`` served by an event loop of its own in a thread, for code under test that is synchronous (a
    ``soulfra run``) or another process (a ``soulfra up``); stopped, and its thread joined, on the way out."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-model", daemon=True)
    thread.start()
    fake = FakeModel(mode, delay=delay)
    try:
        asyncio.run_coroutine_threadsafe(fake.__aenter__(), loop).result(timeout=10)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def decide(system: str, user: str) -> dict[str, Any]:
    """A canned decision that fits the prompt, as a small model constrained to the schema might give."""
    waiting = re.search(r"Ritual (\d+) \S.* is awaiting-blessing", user)
    if waiting and "You govern" in system:
        return {"action": "bless", "ritual": int(waiting.group(1))}
    task = re.search(r"Task (\d+) .*, unclaimed", user)
    if task and "You execute" in system:
        return {"action": "take_task", "task": int(task.group(1))}
    invite = re.search(r"Agents you could invite: ([^.]*)\.", user)
    if invite and "You orchestrate" in system and len(user) % 3 == 0:
        return {"action": "propose_ritual", "name": "lantern vigil", "participants": invite.group(1).split(", ")[:2]}
    thread = re.search(r"Your thread (\d+)", user)
    if thread and len(user) % 2 == 0:
        return {"action": "reply", "thread": int(thread.group(1)), "text": "I hear you; the tide agrees."}
    goals = re.search(r"Your goals: ([^,.]*)", system)
    topic = goals.group(1) if goals else "tides"
    return {"action": "post", "topic": topic, "text": f"Let us talk about {topic}."}
