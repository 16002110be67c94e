"""LangChain document compressor that reranks with Qwen3-Reranker."""

from langchain_qwen3_rerank.reranker import QwenRerank

__all__ = ["QwenRerank"]
