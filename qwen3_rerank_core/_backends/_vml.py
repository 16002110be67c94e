"""Resolve oneMKL's vector-math dispatch once, on one thread, before any scoring.

On CPU, torch sends contiguous float32 and float64 unary ops (``cos``, ``sin``, ``exp``,
``sqrt``, ...) to oneMKL's VML, one call per intra-op thread on that thread's chunk.
oneMKL 2024.2, the version inside the torch 2.10-2.13 wheels, picks each VML function's
kernel lazily, on its first call; when that first call runs on several threads at once,
one thread can run a low-accuracy kernel over its whole chunk although full accuracy was
asked for (pytorch/pytorch#188792; the fix proposed there, pytorch/pytorch#188791, is this
same warm-up inside torch). The next calls are right, so the damage is one tensor, once a
process, at random.

Here that tensor is the rotary table: Qwen3's ``cos`` of the positions is computed in
float32 at the first forward, and a wrong chunk (errors of ~1.5e-4 on half the positions)
moved p(yes) by up to ~1e-4 in the exact float32 mode, in 4 to 8 of 40 fresh processes on
a loaded 2-core machine, and in none that had called each function once first (``benchmarks/vml_race.py`` counts both). :func:`resolve_vml_dispatch` makes that
first call: one element, so it runs on the calling thread alone.

vLLM computes its rotary cos/sin cache in one threaded ``cos`` call when its engine
starts, in processes of its own (spawned on CPU), so a wrong chunk there stays for the life
of the engine. :func:`vllm_general_plugin` is this package's ``vllm.general_plugins``
entry point (``pyproject.toml``): vLLM calls it in every process it starts (the engine core,
its workers, the ``vllm serve`` front end) before it loads a model, in any environment where
this package is installed, unless ``VLLM_PLUGINS`` names other plugins only.

Example::

    >>> resolve_vml_dispatch()  # once a process; later calls return at once
"""

from __future__ import annotations

import functools

__all__ = ["VML_FUNCTIONS", "resolve_vml_dispatch", "vllm_general_plugin"]

VML_FUNCTIONS = (
    "acos",
    "asin",
    "atan",
    "cos",
    "erf",
    "erfc",
    "erfinv",
    "exp",
    "log",
    "log10",
    "log2",
    "sin",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
)
"""The torch functions that torch's CPU kernels hand to VML for float32 and float64
(``aten/src/ATen/cpu/vml.h``, ``IMPLEMENT_VML_MKL``)."""


@functools.cache
def resolve_vml_dispatch() -> None:
    """Call each of :data:`VML_FUNCTIONS` once in float32 and in float64, on a
    one-element tensor (below torch's grain size: this thread only), so that oneMKL picks
    every kernel before threads share the work. Once a process; costs microseconds."""
    import torch

    for dtype in (torch.float32, torch.float64):
        one = torch.full((1,), 0.5, dtype=dtype)
        for name in VML_FUNCTIONS:
            getattr(torch, name)(one)


def vllm_general_plugin() -> None:
    """vLLM's ``vllm.general_plugins`` entry point: :func:`resolve_vml_dispatch` in each
    vLLM process, before the engine computes its rotary cos/sin cache. vLLM may call it
    several times a process; the dispatch is resolved once."""
    resolve_vml_dispatch()
