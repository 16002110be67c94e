"""LlamaIndex node postprocessor that reranks with Qwen3-Reranker."""

from llama_index.postprocessor.qwen3_rerank.base import QwenRerank

__all__ = ["QwenRerank"]
