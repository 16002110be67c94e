"""A user's script, type-checked by tests/test_typing_adapters.py (never run).

A line marked ``# E: [code] text`` is a deliberate mistake: mypy must report an
error with that code and text on it, and nothing else may be reported; a
``reveal_type`` marked ``# R: type`` must show that type (a field's declared type).
The project's own mypy run does not check this file (pyproject.toml).
"""

from typing import reveal_type

from langchain_qwen3_rerank import QwenRerank as LangChainRerank
from llama_index.postprocessor.qwen3_rerank import QwenRerank as LlamaIndexRerank

from qwen3_rerank_core import Fusion, Qwen3Reranker

# What the docs show type-checks: settings, a str api_key, a fusion spec string, reranker=.
LangChainRerank(model="Qwen/Qwen3-Reranker-0.6B", max_length=4096, top_n=3, device="cpu")
LangChainRerank(backend="remote", base_url=["http://a:8000"], api_key="sk-...", fusion=Fusion())
LlamaIndexRerank(fusion="relevance=0.7,first_stage=0.3", min_score=0.5, dtype="bfloat16")
LlamaIndexRerank(reranker=Qwen3Reranker(model="Qwen/Qwen3-Reranker-0.6B"), top_n=5)
LangChainRerank(cache="memory", cache_size=10_000, show_progress=True, max_batch_tokens=None)

LlamaIndexRerank(instrution="typo")  # E: [call-arg] Unexpected keyword argument "instrution"
LangChainRerank(top_n="three")  # E: [arg-type] "top_n" to "QwenRerank" has incompatible type "str"
LlamaIndexRerank(max_length=None)  # E: [arg-type] "max_length" to "QwenRerank" has incompatible
LangChainRerank(cache=3)  # E: [arg-type] "cache" to "QwenRerank" has incompatible type "int"

rerank = LlamaIndexRerank()
reveal_type(rerank.top_n)  # R: builtins.int | None
reveal_type(rerank.max_length)  # R: builtins.int
reveal_type(rerank.model)  # R: builtins.str
reveal_type(rerank.min_score)  # R: builtins.float | None
reveal_type(rerank.reranker)  # R: qwen3_rerank_core._reranker.Qwen3Reranker
reveal_type(rerank.api_key)  # R: pydantic.types.SecretStr | builtins.str | None
compressor = LangChainRerank()
reveal_type(compressor.base_url)  # R: builtins.str | builtins.list[builtins.str] | None
reveal_type(compressor.show_progress)  # R: builtins.bool
reveal_type(compressor.first_stage_key)  # R: builtins.str | None
