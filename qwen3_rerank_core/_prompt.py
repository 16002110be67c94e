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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_INSTRUCTION",
    "DOCUMENT_TOKEN",
    "NO_TOKEN",
    "PREFIX",
    "SUFFIX",
    "SYSTEM_PROMPT",
    "YES_TOKEN",
    "EncodedGroup",
    "PromptEncoder",
    "format_body",
    "format_head",
    "format_prompt",
    "p_yes",
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


class PromptEncoder:
    """Turns (instruction, query, documents) into truncated token-id prompts.

    ``encode`` must encode a batch of texts without adding special tokens
    (e.g. ``lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]``);
    ``token_id`` must map a token string to its id.

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
    ) -> None:
        self._encode = encode
        self.max_length = max_length
        self.yes_id = self._lookup(token_id, YES_TOKEN)
        self.no_id = self._lookup(token_id, NO_TOKEN)
        prefix_ids, suffix_ids = encode([PREFIX, SUFFIX])
        self.prefix_ids: list[int] = list(prefix_ids)
        self.suffix_ids: list[int] = list(suffix_ids)
        #: Tokens left for the body (instruction + query + document).
        self.body_budget = max_length - len(self.prefix_ids) - len(self.suffix_ids)
        if self.body_budget < 1:
            raise ValueError(
                f"max_length={max_length} is too small: the prompt template alone "
                f"takes {len(self.prefix_ids) + len(self.suffix_ids)} tokens"
            )

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

        return cls(encode, token_id, max_length=max_length)

    def encode_head(self, instruction: str, query: str) -> list[int]:
        """Token ids of the head; raises if it leaves no room for a document."""
        head = self._encode([format_head(instruction, query)])[0]
        # At least one token must be left for the document itself.
        if len(head) + 1 > self.body_budget:
            raise ValueError(
                f"instruction and query take {len(head)} tokens and the template "
                f"{len(self.prefix_ids) + len(self.suffix_ids)} more, which leaves no "
                f"room for a document within max_length={self.max_length}; "
                "shorten the query or instruction, or raise max_length"
            )
        return head

    def encode_group(self, instruction: str, query: str, documents: Sequence[str]) -> EncodedGroup:
        """Encode one query with its documents; documents too long are cut at their end."""
        head = self.encode_head(instruction, query)
        bodies = self._encode([format_body(instruction, query, d) for d in documents])
        n_head = len(head)
        tails = []
        for body in bodies:
            if body[:n_head] != head:  # pragma: no cover - guarded by the tokenizer's regex
                raise RuntimeError("internal error: the tokenized head is not a prefix of the body")
            tails.append(body[n_head : self.body_budget] + self.suffix_ids)
        return EncodedGroup(shared=self.prefix_ids + head, tails=tails)

    def encode_prompts(
        self, instruction: str, query: str, documents: Sequence[str]
    ) -> list[list[int]]:
        """Full token-id prompts, one per document."""
        group = self.encode_group(instruction, query, documents)
        return [group.full(i) for i in range(len(documents))]
