"""Run at the start of every Python process of the tests' vLLM servers and engines
(``vllm_server.vllm_env`` puts this folder on ``PYTHONPATH``; the spawned engine processes
inherit it): torch's VML dispatch is resolved on one thread before vLLM computes its rotary
cos/sin cache in one threaded call, which torch's first-call VML race could otherwise leave
with a low-accuracy chunk for the life of the process (``qwen3_rerank_core._backends._vml``).
A one-element call starts no thread pool, so vLLM still sets up its threads as it would.
"""

from qwen3_rerank_core._backends._vml import resolve_vml_dispatch

resolve_vml_dispatch()
