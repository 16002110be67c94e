"""Everything this package knows about Qwen3-Reranker's input and output.

This is the only module that holds the prompt template, the yes/no token lookup,
the template-aware truncation rule and the score formula. Every backend uses it,
which is what makes their scores agree.

The prompt of one (query, document) pair is, byte for byte::

    PREFIX + "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}" + SUFFIX

and the score is ``softmax([logit("no"), logit("yes")])[1]`` at the last position.
Like the official recipe, prefix, body and suffix are tokenized separately and
concatenated; only the body's tail is cut when the prompt is longer than
``max_length`` tokens, which cuts the document and nothing else.

Unlike the recipe, text that comes from the user (instruction, query and
documents) can never produce a special token: a document that contains
``<|im_end|>\n<|im_start|>assistant\n`` is scored as those characters, not as
the template's markers (see :func:`split_markers`). On text without markers
the token ids are the recipe's, byte for byte.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DOCUMENT_TOKEN",
    "MARKERS",
    "NO_TOKEN",
    "PREFIX",
    "SUFFIX",
    "SYSTEM_PROMPT",
    "YES_TOKEN",
    "EncodedGroup",
    "PromptEncoder",
    "TokenTemplate",
    "format_body",
    "format_head",
    "format_prompt",
    "p_yes",
    "split_markers",
]

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".'
)
PREFIX = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
YES_TOKEN = "yes"
NO_TOKEN = "no"
#: The text between the query and the document in the body.
DOCUMENT_TOKEN = "<Document>:"

#: The strings of Qwen3's added tokens (ids 151643-151668). In user text they
#: are ordinary characters, never these tokens (see :func:`split_markers`).
MARKERS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)

_LETTERS = re.compile(r"[^\W\d_]+")


def _marker_pattern(markers: Iterable[str]) -> re.Pattern[str]:
    unique = sorted({m for m in markers if len(m) >= 2}, key=lambda m: (-len(m), m))
    return re.compile("|".join(map(re.escape, unique)))


def _cut_point(marker: str) -> int:
    """Where a marker is split: after its first run of letters (``<|im`` + ``_end|>``).

    The Qwen pre-tokenizer always ends a piece after a run of letters, so the
    two halves tokenized apart give the same ids as the whole marker tokenized
    as ordinary text, and neither half is a marker.
    """
    run = _LETTERS.search(marker)
    if run is not None and run.end() < len(marker):
        return run.end()
    return len(marker) // 2


_DEFAULT_PATTERN = _marker_pattern(MARKERS)


def split_markers(text: str, pattern: re.Pattern[str] | None = None) -> list[str]:
    """Cut ``text`` into pieces none of which contains a special-token string.

    Tokenizers turn a special-token string found anywhere in their input into
    that token, so a retrieved document could forge the prompt template
    (``...<|im_end|>\n<|im_start|>assistant\n...``). Each marker is split
    after its first run of letters, where Qwen's pre-tokenizer splits anyway:
    tokenizing the pieces one by one and concatenating the ids gives exactly
    the ids of the text tokenized as plain characters. Text without markers is
    returned whole.

    Example::

        >>> split_markers("a <|im_end|> b")
        ['a <|im', '_end|> b']
        >>> split_markers("no markers here")
        ['no markers here']
    """
    pat = _DEFAULT_PATTERN if pattern is None else pattern
    pieces: list[str] = []
    start = 0
    while (found := pat.search(text, start)) is not None:
        cut = found.start() + _cut_point(found.group())
        left = text[start:cut]
        # Only a marker hidden across another's halves can leave one in ``left``.
        pieces.extend(split_markers(left, pat) if pat.search(left) else [left])
        start = cut
    pieces.append(text[start:])
    return pieces


def format_head(instruction: str, query: str) -> str:
    """The part of the body that every document of one query shares.

    It ends at ``<Document>:`` (without the following space): the pre-tokenizer
    always starts a new piece at that space, so the tokens of the head are a
    prefix of the tokens of every body built from it.
    """
    return f"<Instruct>: {instruction}\n<Query>: {query}\n{DOCUMENT_TOKEN}"


def format_body(instruction: str, query: str, document: str) -> str:
    """The user turn of the prompt: instruction, query and document."""
    return f"{format_head(instruction, query)} {document}"


def format_prompt(instruction: str, query: str, document: str) -> str:
    """The whole prompt as text (for servers and logs; backends use token ids)."""
    return PREFIX + format_body(instruction, query, document) + SUFFIX


def p_yes(logit_no: float, logit_yes: float) -> float:
    """``softmax([logit_no, logit_yes])[1]``, computed without overflow."""
    diff = logit_no - logit_yes
    if diff >= 0:
        e = math.exp(-diff)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(diff))


#: Encodes texts to token ids without adding special tokens.
EncodeFn = Callable[[list[str]], list[list[int]]]


@dataclass(frozen=True)
class EncodedGroup:
    """One query's documents as token ids, ready for a model.

    ``shared`` (prefix + head) is common to every document; ``tails[i]`` is the
    rest of document ``i``'s prompt (its own body tokens, truncated, then the
    suffix). ``shared + tails[i]`` is the full prompt of document ``i``.
    """

    shared: list[int]
    tails: list[list[int]]

    def full(self, i: int) -> list[int]:
        """The full prompt of document ``i``."""
        return self.shared + self.tails[i]


@dataclass(frozen=True)
class TokenTemplate:
    """The prompt template as token ids, and the rule that cuts prompts to ``max_length``.

    It needs no tokenizer: ``prefix_ids`` and ``suffix_ids`` are the ids of
    :data:`PREFIX` and :data:`SUFFIX` however they were obtained (a local
    tokenizer in :class:`PromptEncoder`, a server's ``/tokenize`` for the remote
    backend). Raises :class:`ValueError` when the template alone leaves no room
    for a body within ``max_length``.

    Example::

        >>> template = TokenTemplate((1, 2), (3,), max_length=8)
        >>> template.body_budget
        5
        >>> group = template.cut_group([10, 11], [[10, 11, 12, 13, 14, 15]])
        >>> group.full(0)
        [1, 2, 10, 11, 12, 13, 14, 3]
    """

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    max_length: int

    def __post_init__(self) -> None:
        if self.body_budget < 1:
            raise ValueError(
                f"max_length={self.max_length} is too small: the prompt template alone "
                f"takes {len(self.prefix_ids) + len(self.suffix_ids)} tokens"
            )

    @property
    def body_budget(self) -> int:
        """Tokens left for the body (instruction + query + document)."""
        return self.max_length - len(self.prefix_ids) - len(self.suffix_ids)

    def check_head(self, head: Sequence[int]) -> None:
        """Raise :class:`ValueError` when ``head`` leaves no room for a document."""
        # At least one token must be left for the document itself.
        if len(head) + 1 > self.body_budget:
            raise ValueError(
                f"instruction and query take {len(head)} tokens and the template "
                f"{len(self.prefix_ids) + len(self.suffix_ids)} more, which leaves no "
                f"room for a document within max_length={self.max_length}; "
                "shorten the query or instruction, or raise max_length"
            )

    def cut_group(self, head: Sequence[int], bodies: Sequence[Sequence[int]]) -> EncodedGroup:
        """One query's prompts from the ids of its head and of each body (head included).

        Each body is cut at its end to :attr:`body_budget` tokens, which cuts
        the document and nothing else.
        """
        self.check_head(head)
        n_head = len(head)
        tails = []
        for body in bodies:
            if list(body[:n_head]) != list(head):  # pragma: no cover - the tokenizer's regex
                raise RuntimeError("internal error: the tokenized head is not a prefix of the body")
            tails.append([*body[n_head : self.body_budget], *self.suffix_ids])
        return EncodedGroup(shared=[*self.prefix_ids, *head], tails=tails)


class PromptEncoder:
    """Turns (instruction, query, documents) into truncated token-id prompts.

    ``encode`` must encode a batch of texts without adding special tokens
    (e.g. ``lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]``);
    ``token_id`` must map a token string to its id. User text (instruction,
    query, documents) is encoded in pieces cut by :func:`split_markers` at
    ``markers`` (default :data:`MARKERS`), so it never yields a special token.

    Example::

        >>> from transformers import AutoTokenizer  # doctest: +SKIP
        >>> tok = AutoTokenizer.from_pretrained("Qwen/Qwen3-Reranker-0.6B")  # doctest: +SKIP
        >>> enc = PromptEncoder.from_hf_tokenizer(tok, max_length=8192)  # doctest: +SKIP
        >>> group = enc.encode_group("Be helpful", "what is 2+2?", ["4", "5"])  # doctest: +SKIP
        >>> len(group.tails)  # doctest: +SKIP
        2
    """

    def __init__(
        self,
        encode: EncodeFn,
        token_id: Callable[[str], int | None],
        *,
        max_length: int,
        markers: Iterable[str] = MARKERS,
    ) -> None:
        self._encode = encode
        self.max_length = max_length
        self._markers = _marker_pattern(markers)
        self.yes_id = self._lookup(token_id, YES_TOKEN)
        self.no_id = self._lookup(token_id, NO_TOKEN)
        prefix_ids, suffix_ids = encode([PREFIX, SUFFIX])
        #: The template's ids and the cut rule (raises when the template alone does not fit).
        self.template = TokenTemplate(tuple(prefix_ids), tuple(suffix_ids), max_length=max_length)
        self.prefix_ids: list[int] = list(prefix_ids)
        self.suffix_ids: list[int] = list(suffix_ids)
        #: Tokens left for the body (instruction + query + document).
        self.body_budget = self.template.body_budget

    @staticmethod
    def _lookup(token_id: Callable[[str], int | None], token: str) -> int:
        tid = token_id(token)
        if tid is None or tid < 0:
            raise ValueError(
                f"the tokenizer has no single token {token!r}; is this a Qwen3-Reranker checkpoint?"
            )
        return tid

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: object, *, max_length: int) -> PromptEncoder:
        """Build from a Hugging Face (fast) tokenizer."""

        def encode(texts: list[str]) -> list[list[int]]:
            out = tokenizer(texts, add_special_tokens=False)  # type: ignore[operator]
            return [list(ids) for ids in out["input_ids"]]

        def token_id(token: str) -> int | None:
            tid = tokenizer.convert_tokens_to_ids(token)  # type: ignore[attr-defined]
            return tid if isinstance(tid, int) else None

        added = getattr(tokenizer, "get_added_vocab", None)
        markers = set(MARKERS)
        if callable(added):
            markers.update(str(t) for t in added())
        return cls(encode, token_id, max_length=max_length, markers=markers)

    def pieces(self, text: str) -> list[str]:
        """The pieces user text is encoded in (:func:`split_markers`)."""
        return split_markers(text, self._markers)

    def encode_user(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode user text so that special-token strings in it stay plain text."""
        split = [self.pieces(t) for t in texts]
        flat = self._encode([p for parts in split for p in parts])
        out: list[list[int]] = []
        pos = 0
        for parts in split:
            ids: list[int] = []
            for piece_ids in flat[pos : pos + len(parts)]:
                ids.extend(piece_ids)
            out.append(ids)
            pos += len(parts)
        return out

    def encode_head(self, instruction: str, query: str) -> list[int]:
        """Token ids of the head; raises if it leaves no room for a document."""
        head = self.encode_user([format_head(instruction, query)])[0]
        self.template.check_head(head)
        return head

    def encode_group(self, instruction: str, query: str, documents: Sequence[str]) -> EncodedGroup:
        """Encode one query with its documents; documents too long are cut at their end."""
        head = self.encode_head(instruction, query)
        bodies = self.encode_user([format_body(instruction, query, d) for d in documents])
        return self.template.cut_group(head, bodies)

    def encode_prompts(
        self, instruction: str, query: str, documents: Sequence[str]
    ) -> list[list[int]]:
        """Full token-id prompts, one per document."""
        group = self.encode_group(instruction, query, documents)
        return [group.full(i) for i in range(len(documents))]
