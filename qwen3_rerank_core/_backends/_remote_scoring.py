"""How the remote backend scores on a vLLM server: a sans-I/O program in named phases.

Details and the reasons are in ``docs/remote_vllm.md``. Once per backend,
:func:`setup_program` learns the token ids of the prompt template and the
server's ``max_model_len`` (``/tokenize``). Then :func:`score_program` runs, for
each call:

1. :func:`plan_prompts`: each document's body (instruction + query + document)
   is formatted and split at special-token strings once. A body with at most as
   many UTF-8 bytes as the body may have tokens cannot need truncation (a
   byte-level BPE token covers at least one byte, :func:`token_bound`) and is
   sent as text. The others, and every body whose user text contains a marker
   string (``<|im_end|>``, ``<think>``, ...), need token ids.
2. :func:`tokenize_pieces`: ``/tokenize`` of each distinct piece those need
   (:func:`~qwen3_rerank_core._prompt.split_markers`), so the server cannot
   read a marker string in user text as the token.
3. :func:`cut_prompts`: the pieces' ids are joined and cut by
   :class:`~qwen3_rerank_core._prompt.TokenTemplate`, exactly as the local
   backends cut them.
4. :func:`recover_texts` (``prompt_format="server"`` only): a cut document is
   sent as the text of its kept tokens (``/detokenize``) when that text
   tokenizes back to the very same ids; otherwise it keeps its ids.
5. :func:`assemble_prompts`: one prompt per document, as text or as ids.
6. :func:`score_prompts`: ``prompt_format="client"`` sends every prompt to
   ``/classify`` already formatted (text, or ids), scored as given whatever
   ``--chat-template`` the server runs; ``"server"`` sends raw query and
   documents to ``/v1/score`` with the instruction in ``chat_template_kwargs``,
   and prompts with ids to ``/classify``. At most ``max_docs_per_request``
   documents per request.

Each phase is a function whose result is a small frozen dataclass; nothing is
changed in place.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .._prompt import PREFIX, SUFFIX, TokenTemplate, format_body, format_head, split_markers
from ._base import Group
from ._http import Call, Program
from ._vllm_api import Tokenized, VLLMApi

__all__ = [
    "assemble_prompts",
    "cut_prompts",
    "plan_prompts",
    "recover_texts",
    "score_program",
    "score_prompts",
    "setup_program",
    "token_bound",
    "tokenize_pieces",
]

logger = logging.getLogger("qwen3_rerank_core.remote")

P = TypeVar("P", "_TextPrompt", "_IdsPrompt")

#: Identifies a document: (group, index in its group).
DocKey = tuple[int, int]


def token_bound(text: str) -> int:
    """An upper bound on the number of tokens of ``text`` for a byte-level BPE tokenizer.

    Every token (special tokens included) covers at least one byte of the text
    the tokenizer sees: the raw text, or its NFC (Qwen) or NFKC normalization,
    either of which may be longer than the raw text.
    """
    raw = len(text.encode("utf-8", "surrogatepass"))
    if text.isascii():
        return raw
    return max(
        raw,
        *(
            len(unicodedata.normalize(form, text).encode("utf-8", "surrogatepass"))
            for form in ("NFC", "NFKC")
        ),
    )


def setup_program(api: VLLMApi, max_length: int) -> Program[TokenTemplate]:
    """The template's token ids on this server, and ``max_length`` capped to its limit.

    Raises :class:`ValueError` when the template alone does not fit.
    """
    prefix: Tokenized
    suffix: Tokenized
    prefix, suffix = yield [api.tokenize(PREFIX), api.tokenize(SUFFIX)]
    max_model_len = prefix.max_model_len or suffix.max_model_len
    if max_model_len is not None and max_length > max_model_len:
        logger.warning(
            "max_length=%d is larger than the server's max_model_len=%d; "
            "prompts are cut to %d tokens instead",
            max_length,
            max_model_len,
            max_model_len,
        )
        max_length = max_model_len
    return TokenTemplate(tuple(prefix.ids), tuple(suffix.ids), max_length=max_length)


def score_program(
    api: VLLMApi,
    template: TokenTemplate,
    groups: Sequence[Group],
    instruction: str,
    *,
    server_format: bool,
    max_docs_per_request: int,
) -> Program[list[list[float]]]:
    """Scores of each group's documents, in input order (the phases above)."""
    plan = plan_prompts(groups, instruction, template.body_budget)
    pieces = yield from tokenize_pieces(api, plan)
    cuts = cut_prompts(plan, pieces, template)
    exact = (yield from recover_texts(api, cuts, instruction)) if server_format else {}
    prompts = assemble_prompts(plan, cuts, exact, server_format=server_format)
    return (
        yield from score_prompts(
            api, plan, prompts, instruction, server_format=server_format, size=max_docs_per_request
        )
    )


# --------------------------------------------------------------------------- 1. plan


@dataclass(frozen=True)
class _Doc:
    """One document, its body formatted and split at markers once."""

    index: int
    text: str
    #: ``format_body(instruction, query, text)``.
    body: str
    #: ``split_markers(body)``: one piece unless the user text holds marker strings.
    pieces: tuple[str, ...]
    #: The user text of its prompt (instruction, query or document) holds a marker string.
    marked: bool
    #: It needs token ids: marked, or possibly longer than the body budget.
    tokenized: bool


@dataclass(frozen=True)
class _Query:
    """One group: its query, the pieces of its head and its planned documents."""

    group: int
    query: str
    head_pieces: tuple[str, ...]
    docs: tuple[_Doc, ...]

    @property
    def tokenized(self) -> tuple[_Doc, ...]:
        return tuple(doc for doc in self.docs if doc.tokenized)


def plan_prompts(groups: Sequence[Group], instruction: str, budget: int) -> tuple[_Query, ...]:
    """Phase 1: format and split every body once; mark those that need token ids."""
    return tuple(
        _plan_query(g, query, documents, instruction, budget)
        for g, (query, documents) in enumerate(groups)
    )


def _plan_query(
    group: int, query: str, documents: Sequence[str], instruction: str, budget: int
) -> _Query:
    head_pieces = tuple(split_markers(format_head(instruction, query)))
    docs = []
    for i, text in enumerate(documents):
        body = format_body(instruction, query, text)
        pieces = tuple(split_markers(body))
        marked = len(head_pieces) > 1 or len(pieces) > 1
        docs.append(_Doc(i, text, body, pieces, marked, marked or token_bound(body) > budget))
    return _Query(group, query, head_pieces, tuple(docs))


# --------------------------------------------------------------------------- 2. tokenize


def tokenize_pieces(api: VLLMApi, plan: Sequence[_Query]) -> Program[Mapping[str, list[int]]]:
    """Phase 2: the ids of every distinct piece that documents needing ids are made of."""
    wanted: dict[str, None] = {}  # an ordered set
    for query in plan:
        docs = query.tokenized
        for doc in docs:
            wanted.update(dict.fromkeys(doc.pieces))
        if docs:
            wanted.update(dict.fromkeys(query.head_pieces))
    if not wanted:
        return {}
    texts = list(wanted)
    replies: list[Tokenized] = yield [api.tokenize(text) for text in texts]
    return {text: reply.ids for text, reply in zip(texts, replies, strict=True)}


# --------------------------------------------------------------------------- 3. cut


@dataclass(frozen=True)
class _Cut:
    """A document that needs token ids, encoded and cut to ``max_length``."""

    group: int
    query: str
    doc: _Doc
    #: The full prompt: prefix + head + kept body tokens + suffix.
    ids: list[int]
    #: The body's ids: its head's, then those of the document that were kept.
    body_ids: list[int]
    #: The document's kept tokens (the body's ids after the head).
    kept: list[int]

    @property
    def key(self) -> DocKey:
        return (self.group, self.doc.index)


def cut_prompts(
    plan: Sequence[_Query], pieces: Mapping[str, list[int]], template: TokenTemplate
) -> tuple[_Cut, ...]:
    """Phase 3: join the pieces' ids of each document needing ids and cut it."""
    cuts: list[_Cut] = []
    n_suffix = len(template.suffix_ids)
    for query in plan:
        docs = query.tokenized
        if not docs:
            continue
        head = _join(pieces, query.head_pieces)
        group = template.cut_group(head, [_join(pieces, doc.pieces) for doc in docs])
        for k, doc in enumerate(docs):
            kept = group.tails[k][: len(group.tails[k]) - n_suffix]
            cuts.append(_Cut(query.group, query.query, doc, group.full(k), head + kept, kept))
    return tuple(cuts)


def _join(pieces: Mapping[str, list[int]], texts: Sequence[str]) -> list[int]:
    return [token for text in texts for token in pieces[text]]


# --------------------------------------------------------------------------- 4. recover


def recover_texts(
    api: VLLMApi, cuts: Sequence[_Cut], instruction: str
) -> Program[Mapping[DocKey, str]]:
    """Phase 4 (server format): text for each cut document the server reads as its ids.

    A cut document without markers is sent as the text of its kept tokens when
    its body, formatted with that text, tokenizes back to the very same ids.
    """
    candidates = [cut for cut in cuts if not cut.doc.marked]
    if not candidates:
        return {}
    decoded: list[str] = yield [api.detokenize(cut.kept) for cut in candidates]
    # The kept tokens start after "<Document>:", with the space that follows it.
    spaced = [
        (cut, text[1:])
        for cut, text in zip(candidates, decoded, strict=True)
        if text.startswith(" ")
    ]
    replies: list[Tokenized] = yield [
        api.tokenize(format_body(instruction, cut.query, text)) for cut, text in spaced
    ]
    exact = {
        cut.key: text
        for (cut, text), reply in zip(spaced, replies, strict=True)
        if reply.ids == cut.body_ids
    }
    for cut in candidates:
        if cut.key not in exact:
            logger.debug(
                "document %d of query %d: its cut text does not tokenize back to "
                "the same ids; scored as token ids through /classify",
                cut.doc.index,
                cut.group,
            )
    return exact


# --------------------------------------------------------------------------- 5. assemble


@dataclass(frozen=True)
class _TextPrompt:
    """A document sent as text: the raw document (server format) or its full prompt."""

    group: int
    index: int
    text: str


@dataclass(frozen=True)
class _IdsPrompt:
    """A document sent as the token ids of its full prompt."""

    group: int
    index: int
    ids: list[int]


@dataclass(frozen=True)
class _Prompts:
    """Every document's prompt, per kind, each in sending order."""

    texts: tuple[_TextPrompt, ...]
    ids: tuple[_IdsPrompt, ...]


def assemble_prompts(
    plan: Sequence[_Query],
    cuts: Sequence[_Cut],
    exact: Mapping[DocKey, str],
    *,
    server_format: bool,
) -> _Prompts:
    """Phase 5: one prompt per document; per group, the short ones first."""
    by_key = {cut.key: cut for cut in cuts}
    texts: list[_TextPrompt] = []
    ids: list[_IdsPrompt] = []
    for query in plan:
        for doc in query.docs:
            if not doc.tokenized:
                # format_prompt(), from the body formatted in phase 1.
                text = doc.text if server_format else PREFIX + doc.body + SUFFIX
                texts.append(_TextPrompt(query.group, doc.index, text))
        for doc in query.tokenized:
            key = (query.group, doc.index)
            if key in exact:
                texts.append(_TextPrompt(query.group, doc.index, exact[key]))
            else:
                ids.append(_IdsPrompt(query.group, doc.index, by_key[key].ids))
    return _Prompts(tuple(texts), tuple(ids))


# --------------------------------------------------------------------------- 6. score


@dataclass(frozen=True)
class _Batch:
    """One scoring request and the prompts it scores, in order."""

    call: Call[list[float]]
    prompts: Sequence[_TextPrompt | _IdsPrompt]


def score_prompts(
    api: VLLMApi,
    plan: Sequence[_Query],
    prompts: _Prompts,
    instruction: str,
    *,
    server_format: bool,
    size: int,
) -> Program[list[list[float]]]:
    """Phase 6: score every prompt, at most ``size`` per request; scores in input order."""
    batches: list[_Batch] = []
    if server_format:
        for query in plan:
            mine = [p for p in prompts.texts if p.group == query.group]
            batches += _batches(mine, size, _score_call(api, query.query, instruction))
    else:
        batches += _batches(
            prompts.texts, size, lambda chunk: api.classify([p.text for p in chunk])
        )
    batches += _batches(prompts.ids, size, lambda chunk: api.classify([p.ids for p in chunk]))
    results: list[list[float]] = yield [batch.call for batch in batches]
    scores = [[0.0] * len(query.docs) for query in plan]
    for batch, values in zip(batches, results, strict=True):
        for prompt, value in zip(batch.prompts, values, strict=True):
            scores[prompt.group][prompt.index] = value
    return scores


def _score_call(
    api: VLLMApi, query: str, instruction: str
) -> Callable[[Sequence[_TextPrompt]], Call[list[float]]]:
    return lambda chunk: api.score(query, [p.text for p in chunk], instruction)


def _batches(
    prompts: Sequence[P], size: int, make: Callable[[Sequence[P]], Call[list[float]]]
) -> list[_Batch]:
    chunks = [prompts[start : start + size] for start in range(0, len(prompts), size)]
    return [_Batch(make(chunk), chunk) for chunk in chunks]
