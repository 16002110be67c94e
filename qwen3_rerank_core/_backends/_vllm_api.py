"""vLLM's HTTP API as the remote backend uses it: endpoints, replies, server hints.

Each function returning a :class:`~._http.Call` builds one request to a vLLM
server (``vllm serve --runner pooling``) and says how to parse its answer;
nothing here sends anything. The routes:

* ``POST /tokenize``: text to token ids (and the server's ``max_model_len``);
* ``POST /detokenize``: token ids back to text;
* ``POST /classify``: prompts (text or token ids), scored as given;
* ``POST /v1/score``: a query and raw documents, formatted by the server's
  ``--chat-template``.

Answers that do not fit the request raise
:class:`~qwen3_rerank_core.InvalidResponseError`; when they look like a server
started without the Qwen3-Reranker overrides, the message says how to start it
(:data:`SERVER_HINT`, from the one definition of the overrides in ``_vllm.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from .._errors import InvalidResponseError, RemoteStatusError
from ._http import Call
from ._http import reply_outcome as http_reply_outcome
from ._vllm import HF_OVERRIDES

__all__ = [
    "SERVER_HINT",
    "Tokenized",
    "VLLMApi",
    "api_root",
    "explain",
    "parse_score_list",
    "parse_tokens",
    "reply_outcome",
]

T = TypeVar("T")

#: What to check when a server's scores are not one probability per prompt.
SERVER_HINT = (
    "is the server started with the Qwen3-Reranker --hf-overrides "
    f"'{json.dumps(HF_OVERRIDES, separators=(',', ':'))}' (see docs/remote_vllm.md)?"
)
#: Added to a "maximum context length" error: the fix is on our side of the wire.
_CONTEXT_HINT = " (set max_length no larger than the server's --max-model-len)"


def api_root(url: str) -> str:
    """``http://host:8000`` from ``http://host:8000/``, ``.../v1`` or ``.../v1/``.

    The routes above live at the root (``/tokenize``) or under ``/v1``, so the
    backend keeps the server's root whichever of the two users give.
    """
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def explain(error: RemoteStatusError) -> RemoteStatusError:
    """``error`` with vLLM's advice added (to a "maximum context length" error)."""
    if error.status_code == 400 and "maximum context length" in error.message:
        return RemoteStatusError(400, error.message + _CONTEXT_HINT, url=error.url)
    return error


#: :func:`~._http.reply_outcome` for a vLLM server's answers (with :func:`explain`).
reply_outcome = partial(http_reply_outcome, explain=explain)


@dataclass(frozen=True)
class Tokenized:
    """A ``/tokenize`` answer."""

    ids: list[int]
    #: The server's ``max_model_len``, when it says.
    max_model_len: int | None


@dataclass(frozen=True)
class VLLMApi:
    """Builds the requests of one model's scoring on a vLLM server."""

    model: str

    def _call(
        self,
        path: str,
        payload: dict[str, Any],
        parse: Callable[[Any], T],
        what: str,
        count: int = 0,
    ) -> Call[T]:
        return Call(path, {"model": self.model, **payload}, parse, what, count)

    def tokenize(self, text: str) -> Call[Tokenized]:
        """Token ids of ``text``, special-token strings matched, no BOS/EOS added."""
        payload = {"prompt": text, "add_special_tokens": False}
        return self._call("/tokenize", payload, parse_tokens, "tokenize")

    def detokenize(self, ids: Sequence[int]) -> Call[str]:
        """The text of ``ids``."""
        return self._call("/detokenize", {"tokens": list(ids)}, parse_detokenized, "detokenize")

    def classify(self, inputs: Sequence[str] | Sequence[list[int]]) -> Call[list[float]]:
        """p(yes) of each prompt (full prompt text, or its token ids), scored as given."""
        return self._call(
            "/classify",
            {"input": list(inputs), "add_special_tokens": False},
            partial(parse_score_list, n=len(inputs), score_key="probs"),
            f"score {len(inputs)} documents",
            len(inputs),
        )

    def score(self, query: str, documents: Sequence[str], instruction: str) -> Call[list[float]]:
        """p(yes) of each raw document for ``query``, formatted by the server's template."""
        return self._call(
            "/v1/score",
            {
                "text_1": query,
                "text_2": list(documents),
                "chat_template_kwargs": {"instruction": instruction},
            },
            partial(parse_score_list, n=len(documents), score_key="score"),
            f"score {len(documents)} documents",
            len(documents),
        )


# --------------------------------------------------------------------------- parsing


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _probability(value: object, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidResponseError(f"{where} is not a number: {value!r}")
    score = float(value)
    if not math.isfinite(score):
        raise InvalidResponseError(f"{where} is not finite: {value!r}")
    if not 0.0 <= score <= 1.0:
        raise InvalidResponseError(f"{where} = {score!r} is not a probability; {SERVER_HINT}")
    return score


def parse_score_list(data: Any, n: int, *, score_key: str) -> list[float]:
    """Scores from a ``/v1/score`` (``score_key="score"``) or ``/classify``
    (``score_key="probs"``) answer, in request order.

    Raises :class:`InvalidResponseError` unless there is exactly one result per
    input, the indices are unique and in range and every score is a finite
    probability.
    """
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InvalidResponseError(
            f"expected a JSON object with a 'data' list, got {_preview(data)}"
        )
    items = data["data"]
    if len(items) != n:
        raise InvalidResponseError(f"expected {n} results, got {len(items)}")
    scores: list[float | None] = [None] * n
    for item in items:
        if not isinstance(item, dict):
            raise InvalidResponseError(f"result is not an object: {_preview(item)}")
        index = item.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
            raise InvalidResponseError(f"result index {index!r} is not in 0..{n - 1}")
        if scores[index] is not None:
            raise InvalidResponseError(f"result index {index} appears twice")
        value = item.get(score_key)
        if score_key == "probs":
            if not isinstance(value, list) or len(value) != 1:
                raise InvalidResponseError(
                    f"result {index}: expected 'probs' with exactly one value, got "
                    f"{_preview(value)}; {SERVER_HINT}"
                )
            value = value[0]
        scores[index] = _probability(value, f"score of result {index}")
    return [s for s in scores if s is not None]


def parse_tokens(data: Any) -> Tokenized:
    """Token ids and ``max_model_len`` from a ``/tokenize`` answer."""
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(_is_int(t) and t >= 0 for t in tokens):
        raise InvalidResponseError(
            f"expected {{'tokens': [int, ...]}} from /tokenize, got {_preview(data)}"
        )
    max_model_len = data.get("max_model_len")
    return Tokenized(
        tokens, max_model_len if _is_int(max_model_len) and max_model_len > 0 else None
    )


def parse_detokenized(data: Any) -> str:
    """The text of a ``/detokenize`` answer."""
    prompt = data.get("prompt") if isinstance(data, dict) else None
    if not isinstance(prompt, str):
        raise InvalidResponseError(
            f"expected {{'prompt': str}} from /detokenize, got {_preview(data)}"
        )
    return prompt


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
