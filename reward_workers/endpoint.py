"""The ``openai`` judge backend: any OpenAI-compatible ``/v1/completions`` endpoint.

Point ``audio_thinker.judge.base_url`` at a server that speaks the (legacy) completions API, for
example ``vllm serve Qwen/Qwen3-8B-Base --port 8000`` -> ``base_url=http://judge-host:8000/v1``.
The judge prompts are completion-style documents (a *base* model continues them), so the chat
API is not used.

One :class:`OpenAICompletionsWorker` sends a whole batch in one request (``prompt`` is a list)
and maps ``choices[i].index`` back to the prompts (servers may return choices in any order). It
keeps one pooled ``httpx.AsyncClient`` (keep-alive connections), created in the event loop that
uses it. Errors are typed for the router (:mod:`reward_workers.backend`):

==========================================  =============================================
what happened                               raised
==========================================  =============================================
no complete reply within ``timeout_s``      :class:`~reward_workers.backend.JudgeTimeout`
connection refused / reset / dropped        :class:`~reward_workers.backend.JudgeWorkerDead`
HTTP 429 / 5xx                              :class:`OpenAIHTTPError` (``status``, retryable)
other HTTP 4xx                              :class:`OpenAIHTTPError` saying what to fix
not JSON, no ``choices``, wrong count/index :class:`~reward_workers.backend.JudgeBackendError`
==========================================  =============================================

The API key is read once, at construction, from the environment variable named by
``audio_thinker.judge.api_key_env`` and sent as ``Authorization: Bearer ...``. It never appears
in ``repr()``, log records or exception messages: every message this module builds (quoted server
error bodies, URLs, the text of httpx errors) goes through :func:`redact_secret`, which masks the
whole key and every piece of it of :data:`MIN_SECRET_FRAGMENT` characters or more (servers echo
keys truncated or partly starred), and an httpx error whose own text holds such a piece is not
chained as the cause. Without the variable no ``Authorization`` header is sent (a local ``vllm
serve`` needs none).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from audio_thinker.config import ConfigError, JudgeSection
from reward_workers.backend import (
    GenerationParams,
    JudgeBackendError,
    JudgeTimeout,
    JudgeWorker,
    JudgeWorkerDead,
)

__all__ = [
    "MIN_SECRET_FRAGMENT", "OpenAICompletionsWorker", "OpenAIHTTPError", "make_openai_workers", "redact_secret",
]

logger = logging.getLogger(__name__)

#: characters of a server's error body quoted in an exception message
_BODY_QUOTE_CHARS = 300
#: the shortest piece of the API key that is masked in messages (shorter pieces are not a secret)
MIN_SECRET_FRAGMENT = 8
_MASK = "***"


def redact_secret(text: str, secret: str, *, min_fragment: int = MIN_SECRET_FRAGMENT) -> str:
    """``text`` with ``secret`` and every substring of it at least ``min_fragment`` characters long
    (compared case-insensitively) replaced by ``***``; overlapping or adjacent pieces become one
    ``***``. A secret shorter than ``min_fragment`` is masked where it appears whole.

    >>> redact_secret("bad key sk-abcdefgh12345678", "sk-abcdefgh12345678")
    'bad key ***'
    >>> redact_secret("key sk-abcdefg... rejected; it ends in gh12345678", "sk-abcdefgh12345678")
    'key ***... rejected; it ends in ***'
    >>> redact_secret("sk-abcd and 1234567 are short pieces", "sk-abcdefgh12345678")
    'sk-abcd and 1234567 are short pieces'
    >>> redact_secret("pin 4711", "4711")
    'pin ***'
    """
    if not secret or not text:
        return text
    if len(secret) < min_fragment:
        return text.replace(secret, _MASK)
    lowered = secret.lower()
    pieces = {lowered[i:i + min_fragment] for i in range(len(lowered) - min_fragment + 1)}
    folded = text.lower()
    masked = [False] * len(text)
    for i in range(len(text) - min_fragment + 1):
        # every window of a matching substring is itself a piece, so the union of the matching
        # windows is exactly the union of the matching substrings
        if folded[i:i + min_fragment] in pieces:
            masked[i:i + min_fragment] = [True] * min_fragment
    out, i = [], 0
    while i < len(text):
        if masked[i]:
            while i < len(text) and masked[i]:
                i += 1
            out.append(_MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class OpenAIHTTPError(JudgeBackendError):
    """The endpoint answered with an HTTP error status (``status``; 429/5xx are ``retryable``)."""

    def __init__(self, message: str, *, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status == 429 or status >= 500
        self.retry_after_s = retry_after_s


def _redact_url(url: str) -> str:
    """``url`` without user:password (a base URL may carry credentials)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


class _Secret:
    """Holds the API key; its repr never shows it (guards ``vars(worker)`` dumps too)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class OpenAICompletionsWorker(JudgeWorker):
    """A judge worker backed by an OpenAI-compatible ``POST {base_url}/completions`` endpoint."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        model: str,
        api_key_env: str = JudgeSection.api_key_env,
        max_connections: int = 8,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if not base_url:
            raise ConfigError(
                "audio_thinker.judge.backend=openai needs audio_thinker.judge.base_url, e.g. "
                "http://judge-host:8000/v1 (an OpenAI-compatible server such as `vllm serve MODEL`)"
            )
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._url = f"{self._base_url}/completions"
        self._model = model
        self._api_key_env = api_key_env
        key = os.environ.get(api_key_env, "").strip() if api_key_env else ""
        self._api_key: _Secret | None = _Secret(key) if key else None
        self._shown_url = self._redact(_redact_url(self._url))
        self._max_connections = max_connections
        self._extra_body = dict(extra_body or {})
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        if self._api_key is None:
            logger.info("judge %s: $%s is not set, no Authorization header is sent", name, api_key_env)

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None else "unset"
        return (f"OpenAICompletionsWorker(name={self.name!r}, url={self._shown_url!r}, model={self._model!r}, "
                f"api_key_env={self._api_key_env!r} ({key}))")

    # -- the protocol ------------------------------------------------------------------------

    async def complete(self, prompts: Sequence[str], params: GenerationParams, *, timeout_s: float) -> list[str]:
        if self._closed:
            raise JudgeWorkerDead(f"judge {self.name}: closed (restart() re-opens it)")
        prompts = list(prompts)
        if not prompts:
            return []
        reply = await self._post(self.request_body(prompts, params), len(prompts), timeout_s)
        if isinstance(reply, Exception):
            raise reply  # outside the except clause: no implicit __context__ (see _chained)
        if reply.status_code >= 400:
            raise self._http_error(reply)
        return self._parse(reply, len(prompts))

    async def restart(self) -> None:
        """Drop the connection pool and open a new one (the next request reconnects)."""
        await self._close_client()
        self._closed = False
        self._get_client()

    async def close(self) -> None:
        self._closed = True
        await self._close_client()

    # -- helpers -----------------------------------------------------------------------------

    async def _post(self, body: dict[str, Any], n: int, timeout_s: float) -> httpx.Response | Exception:
        """The endpoint's response, or the typed error to raise (messages redacted)."""
        client = self._get_client()
        try:
            return await asyncio.wait_for(client.post(self._url, json=body, timeout=httpx.Timeout(timeout_s)),
                                          timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:  # noqa: UP041 (Python 3.10: not TimeoutError)
            return self._chained(JudgeTimeout(self._redact(
                f"judge {self.name}: no reply from {self._shown_url} within {timeout_s:g} s ({n} prompts)"
            )), exc)
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return self._chained(JudgeWorkerDead(self._redact(
                f"judge {self.name}: cannot reach {self._shown_url} ({type(exc).__name__}: {exc}); "
                "is the server up?"
            )), exc)
        except httpx.HTTPError as exc:  # proxy errors, unsupported protocol, bad URL...
            return self._chained(JudgeBackendError(self._redact(
                f"judge {self.name}: request to {self._shown_url} failed ({type(exc).__name__}: {exc})"
            )), exc)

    def request_body(self, prompts: Sequence[str], params: GenerationParams) -> dict[str, Any]:
        """The JSON body of one batched completions request."""
        body: dict[str, Any] = {
            "model": self._model,
            "prompt": list(prompts),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "n": 1,
            "stream": False,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        body.update(self._extra_body)
        return body

    def _redact(self, text: str) -> str:
        """``text`` with the API key and every piece of it (:func:`redact_secret`) masked."""
        return redact_secret(text, self._api_key.reveal()) if self._api_key is not None else text

    def _chained(self, error: Exception, cause: BaseException) -> Exception:
        """``error`` with ``cause`` as its ``__cause__`` (shown in tracebacks), unless the cause's own
        text holds a piece of the key: then it is left out (the caller raises ``error`` outside the
        ``except`` clause, so it is not attached as ``__context__`` either)."""
        texts, link = [], cause
        while link is not None and len(texts) < 16:  # the cause's own chain is printed too
            texts.append(f"{link!s} {link!r}")
            link = link.__cause__ or link.__context__
        text = "\n".join(texts)
        if self._redact(text) == text:
            error.__cause__ = cause
        error.__suppress_context__ = True
        return error

    def _http_error(self, response: httpx.Response) -> OpenAIHTTPError:
        status = response.status_code
        # redacted before it is cut to length (a piece of the key across the cut is masked whole)
        body = " ".join(response.text[:4 * _BODY_QUOTE_CHARS].split())  # decoded with "replace"
        detail = self._redact(body)[:_BODY_QUOTE_CHARS]
        where = f"judge {self.name}: {self._shown_url} answered HTTP {status}"
        quoted = f" ({detail})" if detail else ""
        retry_after = _retry_after(response)
        if status == 429:
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            hint = f"rate limited{wait}"
        elif status >= 500:
            hint = "server error"
        elif status in (401, 403):
            hint = (f"check the API key in ${self._api_key_env} (audio_thinker.judge.api_key_env)"
                    + ("" if self._api_key is not None else f"; ${self._api_key_env} is not set"))
        elif status == 404:
            hint = (f"check audio_thinker.judge.base_url (usually ends in /v1; now {_redact_url(self._base_url)}) "
                    f"and audio_thinker.judge.model_path (the served model name; now {self._model!r})")
        elif status == 413:
            hint = "the request is too large: lower audio_thinker.judge.batch_size"
        elif status in (400, 422):
            hint = ("the server rejected the request: check audio_thinker.judge.model_path / max_new_tokens "
                    "(prompt + max_tokens must fit the served model's context)")
        else:
            hint = "client error"
        return OpenAIHTTPError(self._redact(f"{where}: {hint}{quoted}"), status=status,
                               retry_after_s=retry_after)

    def _parse(self, response: httpx.Response, n: int) -> list[str]:
        bad = f"judge {self.name}: unusable reply from {self._shown_url}"
        try:
            data = response.json()
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            snippet = self._redact(response.text[:320])[:80] if response.content else ""
            # the decoder's own message names a position, never the body
            raise JudgeBackendError(self._redact(f"{bad}: not JSON ({snippet!r})")) from exc
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list):
            raise JudgeBackendError(f"{bad}: no 'choices' list")
        if len(choices) != n:
            raise JudgeBackendError(f"{bad}: {len(choices)} choices for {n} prompts")
        texts: list[str | None] = [None] * n
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                raise JudgeBackendError(f"{bad}: choice {position} is not an object")
            index = choice.get("index", position)
            text = choice.get("text")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
                raise JudgeBackendError(f"{bad}: choice {position} has index {index!r} (expected 0..{n - 1})")
            if texts[index] is not None:
                raise JudgeBackendError(f"{bad}: index {index} appears twice")
            if not isinstance(text, str):
                raise JudgeBackendError(f"{bad}: choice {index} has no text")
            texts[index] = text
        return [t for t in texts if t is not None]

    # -- the connection pool -----------------------------------------------------------------

    def _get_client(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop (a client cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            headers = {"Content-Type": "application/json"}
            if self._api_key is not None:
                headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
            self._client = httpx.AsyncClient(
                headers=headers,
                limits=httpx.Limits(max_connections=self._max_connections,
                                    max_keepalive_connections=self._max_connections),
                follow_redirects=False,
            )
            self._client_loop = loop
        return self._client

    async def _close_client(self) -> None:
        client, loop = self._client, self._client_loop
        self._client, self._client_loop = None, None
        if client is None or client.is_closed:
            return
        try:
            if loop is asyncio.get_running_loop():
                await client.aclose()
        except Exception:  # closing a broken pool must not fail restart()
            logger.debug("judge %s: closing the old connection pool failed", self.name, exc_info=True)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def make_openai_workers(cfg: JudgeSection) -> list[JudgeWorker]:
    """``cfg.num_workers`` workers on the same endpoint, each with its own connection pool."""
    return [
        OpenAICompletionsWorker(name=f"openai-{i}", base_url=cfg.base_url or "", model=cfg.model_path,
                                api_key_env=cfg.api_key_env)
        for i in range(cfg.num_workers)
    ]
