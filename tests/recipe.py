"""The official Qwen3-Reranker recipe (transformers), as published on the model card.

This is the reference the package's scores are checked against. It is written
out independently of ``qwen3_rerank_core`` on purpose: prefix, suffix, default
instruction and score formula are copied from the model card, not imported.
The only additions are: the model and tokenizer are held by a class instead of
globals, everything runs in fp32 on CPU, :meth:`OfficialRecipe.score` can
split the pairs into sub-batches (by default ALL pairs go in one left-padded
batch, as in the model card), and the model is asked for the logits of the last
position only (``logits_to_keep=1``). That last change is exact: the model card
reads ``logits[:, -1, :]`` and the LM head maps each position independently;
it avoids materialising batch x length x 151,669 logits (30x faster here).
``full_logits=True`` runs the literal model-card call, and a test checks that
both agree.

Import it from tests as ``from recipe import OfficialRecipe`` (``conftest.py``
puts this folder on ``sys.path``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".'
    "<|im_end|>\n<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_instruction(instruction: str | None, query: str, doc: str) -> str:
    """The user turn of one pair (model card: ``format_instruction``)."""
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    output = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}".format(  # noqa: UP032
        instruction=instruction, query=query, doc=doc
    )
    return output


class OfficialRecipe:
    """Model-card scoring of formatted pairs with one checkpoint folder.

    ``model`` / ``tokenizer`` may be passed in to reuse objects already loaded
    (the tokenizer must have been loaded with ``padding_side="left"``).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_length: int = 8192,
        model: Any = None,
        tokenizer: Any = None,
        full_logits: bool = False,
    ) -> None:
        self.max_length = max_length
        self.full_logits = full_logits
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(
            str(model_dir), padding_side="left"
        )
        if self.tokenizer.padding_side != "left":
            raise ValueError("the recipe needs a tokenizer with padding_side='left'")
        self.model = (
            model
            or AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        )
        self.token_false_id = self.tokenizer.convert_tokens_to_ids("no")
        self.token_true_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.prefix_tokens = self.tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_tokens = self.tokenizer.encode(SUFFIX, add_special_tokens=False)

    def _tokenize(self, pairs: Sequence[str]) -> Any:
        """First half of the model card's ``process_inputs``: truncate, add prefix/suffix."""
        inputs = self.tokenizer(
            list(pairs),
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=self.max_length - len(self.prefix_tokens) - len(self.suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        return inputs

    def token_ids(self, pairs: Sequence[str]) -> list[list[int]]:
        """The unpadded prompt ids of formatted pairs, exactly as the model gets them."""
        return [list(ids) for ids in self._tokenize(pairs)["input_ids"]]

    def process_inputs(self, pairs: Sequence[str]) -> Any:
        """Model card ``process_inputs``: truncate, add prefix/suffix, left-pad to a batch."""
        inputs = self._tokenize(pairs)
        with warnings.catch_warnings():
            # transformers warns that max_length is unused with padding=True; the card passes it.
            warnings.filterwarnings(
                "ignore", message=".*max_length.*is ignored", category=UserWarning
            )
            inputs = self.tokenizer.pad(
                inputs, padding=True, return_tensors="pt", max_length=self.max_length
            )
        for key in inputs:
            inputs[key] = inputs[key].to(self.model.device)
        return inputs

    @torch.no_grad()
    def compute_logits(self, inputs: Any) -> list[float]:
        """Model card ``compute_logits``: p(yes) from the last position's yes/no logits."""
        if self.full_logits:
            batch_scores = self.model(**inputs).logits[:, -1, :]
        else:
            batch_scores = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
        true_vector = batch_scores[:, self.token_true_id]
        false_vector = batch_scores[:, self.token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        scores: list[float] = batch_scores[:, 1].exp().tolist()
        return scores

    def score_pairs(self, pairs: Sequence[str], *, batch_size: int | None = None) -> list[float]:
        """Scores of formatted pairs; all in one batch unless ``batch_size`` is given."""
        step = batch_size or max(len(pairs), 1)
        scores: list[float] = []
        for start in range(0, len(pairs), step):
            scores.extend(self.compute_logits(self.process_inputs(pairs[start : start + step])))
        return scores

    def score(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        batch_size: int | None = None,
    ) -> list[float]:
        """Scores of ``documents`` for ``query`` (the model card's whole pipeline)."""
        pairs = [format_instruction(instruction, query, doc) for doc in documents]
        return self.score_pairs(pairs, batch_size=batch_size)
