"""The ``openai`` judge backend against a scripted local completions server (aiohttp, no network).

Each test runs one event loop holding both the server (port 0, found after start) and the worker.
The server answers from a script: normal replies (choices shuffled), garbage, slow replies, HTTP
errors; it records every request so the body and headers can be checked.
"""

import asyncio
import json
import logging
import random
import traceback

import pytest
from aiohttp import web

from audio_thinker.config import ConfigError, JudgeSection
from audio_thinker.rewards.verdict import GenerationParams
from reward_workers.backend import (
    JudgeBackendError,
    JudgeTimeout,
    JudgeWorker,
    JudgeWorkerDead,
)
from reward_workers.endpoint import (
    MIN_SECRET_FRAGMENT,
    OpenAICompletionsWorker,
    OpenAIHTTPError,
    make_openai_workers,
    redact_secret,
)

KEY_ENV = "AUDIO_THINKER_TEST_JUDGE_KEY"
KEY = "sk-test-7f3a9c1e5b2d4x8q"
MODEL = "Qwen/Qwen3-8B-Base"
PARAMS = GenerationParams(max_new_tokens=5, temperature=0.0, stop=("\n",))


def continuation(prompt: str) -> str:
    return f" yes:{prompt}"


class ScriptedServer:
    """An OpenAI-style ``/v1/completions`` server whose next replies are scripted."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[str] = []  # actions for the next requests; "ok" once empty
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/completions", self.handle)
        app.router.add_post("/{prefix}/v1/completions", self.handle)  # a base URL with a path before /v1
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append({"headers": dict(request.headers), "body": body})
        action = self.script.pop(0) if self.script else "ok"
        prompts = list(body.get("prompt", [])) if isinstance(body, dict) else []
        choices = [{"index": i, "text": continuation(p), "finish_reason": "stop", "logprobs": None}
                   for i, p in enumerate(prompts)]
        random.Random(len(self.requests)).shuffle(choices)
        reply = {"id": "cmpl-1", "object": "text_completion", "model": MODEL, "choices": choices}
        if action == "ok":
            return web.json_response(reply)
        if action == "reversed":
            reply["choices"] = sorted(choices, key=lambda c: -c["index"])
            return web.json_response(reply)
        if action == "no_index":  # some servers omit index: list position is the only order left
            reply["choices"] = [{"text": continuation(p)} for p in prompts]
            return web.json_response(reply)
        if action == "slow":
            await asyncio.sleep(1.0)
            return web.json_response(reply)
        if action == "not_json":
            return web.Response(text="<html>upstream hiccup</html>", content_type="text/html")
        if action == "no_choices":
            return web.json_response({"object": "text_completion"})
        if action == "short":
            reply["choices"] = choices[:-1]
            return web.json_response(reply)
        if action == "dup_index":
            reply["choices"] = [{**c, "index": 0} for c in choices]
            return web.json_response(reply)
        if action == "bad_index":
            reply["choices"] = [{**c, "index": c["index"] + 10} for c in choices]
            return web.json_response(reply)
        if action == "null_text":
            reply["choices"] = [{**c, "text": None} for c in choices]
            return web.json_response(reply)
        if action == "500":
            return web.json_response({"error": {"message": "CUDA out of memory"}}, status=500)
        if action == "503":
            return web.Response(status=503, text="overloaded")
        if action == "429":
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "2"})
        if action == "401":  # a careless server echoes the key it rejected
            auth = request.headers.get("Authorization", "")
            return web.json_response({"error": {"message": f"invalid api key {auth}"}}, status=401)
        if action == "401_pieces":  # servers echo keys cut short, starred in the middle, or re-cased
            message = f"invalid api key {KEY[:12]}... (ends in {KEY[-9:]}; {KEY[2:12].upper()})"
            return web.json_response({"error": {"message": message}}, status=401)
        if action == "500_pieces":
            return web.Response(status=500, text=f"upstream said: key={KEY[5:15]}******{KEY[-8:]} failed")
        if action == "not_json_pieces":
            return web.Response(text=f"<html>{KEY[3:13]}</html>", content_type="text/html")
        if action == "404":
            return web.json_response({"error": {"message": "The model `x` does not exist."}}, status=404)
        if action == "400":
            return web.json_response({"error": {"message": "max_tokens too large"}}, status=400)
        raise AssertionError(f"unknown action {action}")


def run(coro):
    return asyncio.run(coro)


def prompts(n=3):
    return [f"Question {i}\nVerdict:" for i in range(n)]


def make_worker(base_url, **kw):
    return OpenAICompletionsWorker(name="openai-0", base_url=base_url, model=MODEL, api_key_env=KEY_ENV, **kw)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def assert_no_key(*texts):
    for text in texts:
        assert KEY not in text


def assert_no_key_piece(*texts):
    """No piece of the key of MIN_SECRET_FRAGMENT characters or more, in any letter case."""
    pieces = [KEY[i:i + MIN_SECRET_FRAGMENT].lower() for i in range(len(KEY) - MIN_SECRET_FRAGMENT + 1)]
    for text in texts:
        leaked = [piece for piece in pieces if piece in text.lower()]
        assert not leaked, f"pieces of the key {leaked} in: {text}"


def full_text(exc: BaseException) -> str:
    """str, repr and the whole traceback (causes included) of an exception."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


# -- normal replies ------------------------------------------------------------------------------


def test_batched_request_body_headers_and_index_order():
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            server.script = ["ok", "reversed", "no_index"]
            outs = [await worker.complete(prompts(5), PARAMS, timeout_s=5) for _ in range(3)]
            empty = await worker.complete([], PARAMS, timeout_s=5)
        finally:
            await worker.close()
            await server.stop()
        return server, outs, empty

    server, outs, empty = run(main())
    expected = [continuation(p) for p in prompts(5)]
    assert outs == [expected, expected, expected]
    assert empty == []
    assert len(server.requests) == 3  # one request per batch, none for an empty batch
    body = server.requests[0]["body"]
    assert body["model"] == MODEL
    assert body["prompt"] == prompts(5)
    assert body["max_tokens"] == 5
    assert body["temperature"] == 0.0
    assert body["stop"] == ["\n"]
    assert body["n"] == 1
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


def test_shuffled_choices_are_reordered_by_index():
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            return [await worker.complete(prompts(8), PARAMS, timeout_s=5) for _ in range(4)]
        finally:
            await worker.close()
            await server.stop()

    for out in run(main()):
        assert out == [continuation(p) for p in prompts(8)]


def test_no_key_no_authorization_header_and_empty_stop(monkeypatch):
    monkeypatch.delenv(KEY_ENV)

    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            await worker.complete(["p"], GenerationParams(max_new_tokens=3, temperature=0.7, stop=()), timeout_s=5)
        finally:
            await worker.close()
            await server.stop()
        return server.requests[0]

    request = run(main())
    assert "Authorization" not in request["headers"]
    assert "stop" not in request["body"]
    assert request["body"]["temperature"] == 0.7


def test_key_is_read_at_construction(monkeypatch):
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        monkeypatch.setenv(KEY_ENV, "sk-changed-later")
        try:
            await worker.complete(["p"], PARAMS, timeout_s=5)
        finally:
            await worker.close()
            await server.stop()
        return server.requests[0]["headers"]["Authorization"]

    assert run(main()) == f"Bearer {KEY}"


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action, fragment", [
    ("not_json", "not JSON"),
    ("no_choices", "no 'choices'"),
    ("short", "2 choices for 3 prompts"),
    ("dup_index", "appears twice"),
    ("bad_index", "(expected 0..2)"),
    ("null_text", "no text"),
])
def test_garbage_replies_raise_backend_error(action, fragment):
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            server.script = [action]
            with pytest.raises(JudgeBackendError) as info:
                await worker.complete(prompts(3), PARAMS, timeout_s=5)
            # the worker stays usable after a bad reply
            assert await worker.complete(prompts(3), PARAMS, timeout_s=5) == [continuation(p) for p in prompts(3)]
            return info.value
        finally:
            await worker.close()
            await server.stop()

    err = run(main())
    assert not isinstance(err, (JudgeTimeout, JudgeWorkerDead, OpenAIHTTPError))
    assert fragment in str(err)


def test_slow_reply_times_out_and_the_worker_recovers():
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            server.script = ["slow"]
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(JudgeTimeout) as info:
                await worker.complete(prompts(2), PARAMS, timeout_s=0.3)
            elapsed = loop.time() - start
            after = await worker.complete(prompts(2), PARAMS, timeout_s=5)
            return info.value, elapsed, after
        finally:
            await worker.close()
            await server.stop()

    err, elapsed, after = run(main())
    assert elapsed < 0.9
    assert "0.3 s" in str(err)
    assert after == [continuation(p) for p in prompts(2)]


@pytest.mark.parametrize("action, status, retryable, fragment", [
    ("500", 500, True, "CUDA out of memory"),
    ("503", 503, True, "overloaded"),
    ("429", 429, True, "retry after 2 s"),
    ("401", 401, False, f"${KEY_ENV}"),
    ("404", 404, False, "base_url"),
    ("400", 400, False, "max_tokens too large"),
])
def test_http_errors(action, status, retryable, fragment):
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            server.script = [action]
            with pytest.raises(OpenAIHTTPError) as info:
                await worker.complete(prompts(2), PARAMS, timeout_s=5)
            return info.value
        finally:
            await worker.close()
            await server.stop()

    err = run(main())
    assert isinstance(err, JudgeBackendError)
    assert err.status == status
    assert err.retryable is retryable
    assert fragment in str(err)
    assert f"HTTP {status}" in str(err)
    if status == 429:
        assert err.retry_after_s == 2.0
    if status == 404:
        assert "model_path" in str(err)


def test_the_key_never_leaks(caplog):
    """repr(worker), error messages, tracebacks and DEBUG logs (httpx/httpcore included) never show the key."""
    caplog.set_level(logging.DEBUG)
    # explicitly too: importing vLLM (an earlier test in the session) sets httpx's logger to WARNING
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)

    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        errors = []
        try:
            await worker.complete(prompts(2), PARAMS, timeout_s=5)
            for action in ["401", "500", "not_json", "slow", "short"]:
                server.script = [action]
                try:
                    await worker.complete(prompts(2), PARAMS, timeout_s=0.3)
                except JudgeBackendError as exc:
                    errors.append(exc)
                except JudgeTimeout as exc:
                    errors.append(exc)
            await server.stop()
            try:
                await worker.complete(prompts(2), PARAMS, timeout_s=2)
            except JudgeWorkerDead as exc:
                errors.append(exc)
            await worker.restart()
            return worker, errors, server.requests
        finally:
            await worker.close()
            await server.stop()

    worker, errors, requests = run(main())
    assert len(errors) == 6
    assert requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # it was sent...
    assert "invalid api key" in str(errors[0]) and "***" in str(errors[0])  # ...and redacted when echoed
    assert "HTTP Request: POST" in caplog.text and "httpcore" in caplog.text  # the client's logs were captured
    assert_no_key(repr(worker), str(vars(worker)), caplog.text, *(full_text(e) for e in errors))
    assert KEY_ENV in repr(worker) and "set" in repr(worker)


def test_pieces_of_the_key_are_redacted_from_every_message(caplog):
    """Server bodies that echo the key truncated, starred in the middle or upper-cased, a base URL
    holding a piece of it: no piece of 8+ characters reaches a message, a traceback or a log line."""
    caplog.set_level(logging.DEBUG)

    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        errors = []
        try:
            for action in ["401_pieces", "500_pieces", "not_json_pieces"]:
                server.script = [action]
                with pytest.raises(JudgeBackendError) as info:
                    await worker.complete(prompts(2), PARAMS, timeout_s=5)
                errors.append(info.value)
            logged = caplog.text
            # a base URL with a piece of the key in its path: HTTP error, timeout, connection refused
            keyed = make_worker(url.replace("/v1", f"/{KEY[:10]}/v1"))
            try:
                for action, error in [("404", OpenAIHTTPError), ("slow", JudgeTimeout)]:
                    server.script = [action]
                    with pytest.raises(error) as info:
                        await keyed.complete(prompts(2), PARAMS, timeout_s=0.3)
                    errors.append(info.value)
                await server.stop()
                with pytest.raises(JudgeWorkerDead) as info:
                    await keyed.complete(prompts(2), PARAMS, timeout_s=2)
                errors.append(info.value)
                return keyed, errors, logged
            finally:
                await keyed.close()
        finally:
            await worker.close()
            await server.stop()

    keyed, errors, logged = run(main())
    assert [type(e).__name__ for e in errors] == ["OpenAIHTTPError", "OpenAIHTTPError", "JudgeBackendError",
                                                  "OpenAIHTTPError", "JudgeTimeout", "JudgeWorkerDead"]
    assert "invalid api key ***" in str(errors[0]) and "ends in ***" in str(errors[0])
    assert "upstream said: key=******" in str(errors[1]), str(errors[1])  # adjacent pieces: one mask each
    assert "HTTP 404" in str(errors[3]) and "base_url" in str(errors[3]) and "/***/v1" in str(errors[3])
    # logs of the requests whose bodies echoed pieces (httpx/httpcore included; the request lines of
    # the keyed URL are httpx's own, and the URL is what the config says)
    assert_no_key_piece(logged, repr(keyed), *(full_text(e) for e in errors))


def test_redact_secret_masks_every_long_piece():
    key = "sk-proj-AbCdEfGh1234"
    assert redact_secret(f"x {key} y", key) == "x *** y"
    # pieces of 8 are masked, one of 7 is kept
    assert redact_secret(f"{key[:8]}|{key[8:16]}|{key[13:]}", key) == "***|***|" + key[13:]
    assert redact_secret(key[:7] + " " + key[-7:], key) == key[:7] + " " + key[-7:]  # pieces under 8 stay
    assert redact_secret(key.upper(), key) == "***"
    assert redact_secret(f"{key[:9]}{key[5:14]}", key) == "***"  # overlapping pieces: one mask
    assert redact_secret("short 1234 key", "1234") == "short *** key"
    assert redact_secret("nothing here", "") == "nothing here"


def test_connection_refused_then_restart_recovers():
    async def main():
        server = ScriptedServer()
        url = await server.start()
        port = server.port
        worker = make_worker(url)
        try:
            first = await worker.complete(prompts(2), PARAMS, timeout_s=5)
            await server.stop()
            with pytest.raises(JudgeWorkerDead) as info:
                await worker.complete(prompts(2), PARAMS, timeout_s=5)
            await server.start(port)  # the server is back on the same port
            await worker.restart()
            again = await worker.complete(prompts(2), PARAMS, timeout_s=5)
            return first, info.value, again
        finally:
            await worker.close()
            await server.stop()

    first, err, again = run(main())
    assert first == again == [continuation(p) for p in prompts(2)]
    assert "is the server up" in str(err)


def test_connection_reset_is_worker_dead():
    """A server that accepts and drops the connection without a reply."""

    async def main():
        async def drop(reader, writer):
            await reader.read(100)
            writer.transport.abort()

        raw = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = raw.sockets[0].getsockname()[1]
        worker = make_worker(f"http://127.0.0.1:{port}/v1")
        try:
            with pytest.raises(JudgeWorkerDead):
                await worker.complete(prompts(2), PARAMS, timeout_s=5)
        finally:
            await worker.close()
            raw.close()
            await raw.wait_closed()

    run(main())


def test_closed_worker_is_dead_until_restart():
    async def main():
        server = ScriptedServer()
        url = await server.start()
        worker = make_worker(url)
        try:
            await worker.close()
            with pytest.raises(JudgeWorkerDead):
                await worker.complete(prompts(1), PARAMS, timeout_s=5)
            await worker.restart()
            return await worker.complete(prompts(1), PARAMS, timeout_s=5)
        finally:
            await worker.close()
            await server.stop()

    assert run(main()) == [continuation(prompts(1)[0])]


def test_a_worker_survives_a_new_event_loop():
    """The pooled client belongs to one loop; a worker used from a second loop opens a new pool."""

    async def once():
        server = ScriptedServer()
        url = await server.start()
        try:
            worker.__init__(name="openai-0", base_url=url, model=MODEL, api_key_env=KEY_ENV)
            return await worker.complete(prompts(1), PARAMS, timeout_s=5)
        finally:
            await server.stop()

    worker = make_worker("http://127.0.0.1:1/v1")
    assert run(once()) == run(once()) == [continuation(prompts(1)[0])]


# -- the factory -------------------------------------------------------------------------------------


def test_make_openai_workers():
    cfg = JudgeSection(backend="openai", num_workers=3, base_url="http://judge:8000/v1/", api_key_env=KEY_ENV)
    workers = make_openai_workers(cfg)
    assert [w.name for w in workers] == ["openai-0", "openai-1", "openai-2"]
    assert all(isinstance(w, JudgeWorker) for w in workers)
    assert "http://judge:8000/v1/completions" in repr(workers[0])

    async def pools():
        clients = [w._get_client() for w in workers]
        for w in workers:
            await w.close()
        return clients

    clients = run(pools())
    assert len({id(c) for c in clients}) == 3  # separate connection pools


def test_missing_base_url_is_a_clear_error():
    with pytest.raises(ConfigError, match="audio_thinker.judge.base_url"):
        make_openai_workers(JudgeSection(backend="openai"))
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompletionsWorker(name="x", base_url="", model=MODEL)


def test_credentials_in_the_base_url_are_not_shown():
    worker = OpenAICompletionsWorker(name="x", base_url="http://user:hunter2@judge:8000/v1", model=MODEL)
    assert "hunter2" not in repr(worker)

