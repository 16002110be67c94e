"""The lean forward's element-wise steps in C (``_backends/_cpu_elementwise.py``).

Each step is held to the torch arithmetic it replaces (float32, one rounding to bf16):
equal to it within one bf16 rounding, on the layouts the lean forward passes (the q/k
columns of the fused projection, rotary tables shared by a batch or one a row, the ragged
rows), the residual add exact; the same bits on any thread count; inputs it does not take
are refused (``None``: the caller runs torch). Then the whole bf16 forward with the steps,
norm weights that are not ones and left unfolded, against float32. Where this CPU cannot
build or run the library (no AVX-512 BF16, no C compiler), these tests skip.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from qwen3_rerank_core._backends import _cpu_attention, _cpu_elementwise, _lean  # noqa: E402
from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir  # noqa: E402

RUNNABLE = _cpu_attention.unrunnable_reason(torch)


@pytest.fixture(scope="module")
def steps() -> _cpu_elementwise.CpuElementwise:
    if RUNNABLE is not None:
        pytest.skip(f"kernels: {RUNNABLE}")
    return _cpu_elementwise.load_elementwise()


def _gen(seed: int) -> Any:
    return torch.Generator().manual_seed(seed)


def _close_in_bf16(got: Any, want: Any, scale: Any | None = None) -> None:
    """``got`` (bf16) is ``want`` (float32) rounded to bf16, give or take the float32
    arithmetic's last bits: at most 2 bf16 ulps apart, nearly all equal. ``scale``: the
    magnitude of the terms summed into ``want`` (where they cancel, float32's error is
    relative to them)."""
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    size = want.abs() if scale is None else torch.maximum(want.abs(), scale * 2.0**-14)
    ulp = size.clamp_min(1e-30) * 2.0**-7
    diff = (got.float() - want).abs()
    assert bool((diff <= 2 * ulp).all()), float((diff / ulp).max())
    assert float((got != want.bfloat16()).float().mean()) < 0.01


def _rms_norm(x: Any, weight: Any | None, eps: float) -> Any:
    scale = torch.rsqrt(x.double().square().mean(-1, keepdim=True) + eps)
    out = x.double() * scale
    return (out if weight is None else out * weight.double()).float()


@pytest.mark.parametrize("width", [8, 64, 72, 1000, 1024])
@pytest.mark.parametrize("with_delta", [False, True])
@pytest.mark.parametrize("with_weight", [False, True])
def test_add_rms_norm_is_the_torch_norm_of_the_sum(
    steps: Any, width: int, with_delta: bool, with_weight: bool
) -> None:
    g = _gen(width)
    x = torch.randn(3, 7, width, generator=g) * 3
    delta = (torch.randn(3, 7, width, generator=g) * 2).bfloat16() if with_delta else None
    weight = torch.rand(width, generator=g) * 2 if with_weight else None
    before = x.clone()
    normed = steps.add_rms_norm(x, delta, weight, 1e-6)
    want_x = before + delta.float() if delta is not None else before
    assert torch.equal(x, want_x)  # the add: exact, in place
    _close_in_bf16(normed, _rms_norm(want_x, weight, 1e-6))


@pytest.mark.parametrize("width", [512, 40])
def test_add_is_exact_and_in_place(steps: Any, width: int) -> None:
    g = _gen(1)
    x = torch.randn(1, 37, width, generator=g)
    delta = torch.randn(1, 37, width, generator=g).bfloat16()
    want = x + delta.float()
    assert steps.add(x, delta) is x
    assert torch.equal(x, want)


def test_a_partial_last_vector_writes_nothing_past_the_row(steps: Any) -> None:
    """Rows whose width is not a multiple of 16, taken from the middle of a larger
    buffer: the masked last vector leaves the elements after each row as they were."""
    g = _gen(3)
    width, rows = 40, 5
    buffer = torch.randn(rows * width + 16, generator=g)
    x = buffer[:-16].view(rows, width)
    guard = buffer[-16:].clone()
    out = steps.add_rms_norm(x, torch.randn(rows, width, generator=g).bfloat16(), None, 1e-6)
    assert out is not None and out.shape == (rows, width)
    assert torch.equal(buffer[-16:], guard)


def _norm_rotate(
    x: Any, weight: Any, swapped: Any, cos: Any, sin: Any, eps: float
) -> tuple[Any, Any]:
    """The reference: Qwen3's per-head RMSNorm then ``x * cos + swap_halves(x) * sin``,
    in float64; and the magnitude of those two terms."""
    x = x.double()
    normed = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight.double()
    half = x.shape[-1] // 2
    swapped_x = torch.cat((normed[..., half:], normed[..., :half]), dim=-1)
    a, b = normed * cos.double(), swapped_x * sin.double()
    return (a + b).float(), (a.abs() + b.abs()).float()


def _tables(batch: int, positions: int, dim: int, seed: int) -> tuple[Any, Any]:
    g = _gen(seed)
    angle = torch.rand(batch, positions, 1, dim // 2, generator=g) * 6.3
    angle = torch.cat((angle, angle), dim=-1)
    sin = angle.sin()
    half = dim // 2
    signed = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
    return angle.cos(), signed


@pytest.mark.parametrize(
    ("batch", "positions", "dim", "table_batch"),
    [
        (2, 9, 128, 1),
        (1, 40, 64, 1),
        (5, 1, 128, 5),
        (3, 4, 256, 3),
        (2, 7, 80, 1),
        (1, 5, 48, 1),
        (2, 6, 72, 1),
        (3, 5, 24, 3),
        (1, 4, 2, 1),
    ],
    ids=["padded-d128", "ragged-d64", "last-positions", "d256", "d80", "d48", "d72", "d24", "d2"],
)
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_norm_rotate_is_the_torch_norm_then_rotation(
    steps: Any, batch: int, positions: int, dim: int, table_batch: int, dtype: str
) -> None:
    """On the q/k columns of a fused projection's output (a strided view), bf16 (oneDNN's
    products) or float32 (our product kernel's, unrounded), the rotary tables shared by
    the batch or one a row."""
    g = _gen(dim + positions)
    heads, kv_heads = 4, 2
    qkv = torch.randn(batch, positions, (heads + 2 * kv_heads) * dim, generator=g) * 3
    qkv = qkv.to(getattr(torch, dtype))
    x = qkv[..., : (heads + kv_heads) * dim].view(batch, positions, heads + kv_heads, dim)
    weight = torch.rand(heads + kv_heads, dim, generator=g) * 2
    half = dim // 2
    swapped = torch.cat((weight[:, half:], weight[:, :half]), dim=-1)
    cos, sin = _tables(table_batch, positions, dim, seed=dim)
    got = steps.norm_rotate(x, weight, swapped, cos, sin, 1e-6)
    assert got.is_contiguous()
    _close_in_bf16(got, *_norm_rotate(x, weight, swapped, cos, sin, 1e-6))


def test_the_same_bits_on_any_thread_count(steps: Any) -> None:
    g = _gen(7)
    x = torch.randn(64, 256, generator=g)
    delta = torch.randn(64, 256, generator=g).bfloat16()
    q = torch.randn(2, 32, 6, 128, generator=g).bfloat16()
    weight = torch.rand(6, 128, generator=g)
    cos, sin = _tables(1, 32, 128, seed=3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            y = x.clone()
            results.append(
                (
                    steps.add_rms_norm(y, delta, None, 1e-6),
                    y,
                    steps.norm_rotate(q, weight, weight, cos, sin, 1e-6),
                )
            )
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_inputs_it_does_not_take_are_refused(steps: Any) -> None:
    """``None`` (the caller runs torch) for another dtype, a non-contiguous stream, a
    float32 delta, an odd head dimension or one over 1024, float64 heads."""
    assert steps.add_rms_norm(torch.randn(2, 32).double(), None, None, 1e-6) is None
    assert steps.add_rms_norm(torch.randn(32, 2).T, None, None, 1e-6) is None
    assert steps.add_rms_norm(torch.randn(2, 0), None, None, 1e-6) is None
    assert steps.add(torch.randn(2, 32), torch.randn(2, 32)) is None  # a float32 delta
    for dim in (41, 1040):
        q = torch.randn(1, 3, 2, dim).bfloat16()
        cos = sin = torch.ones(1, 3, 1, dim)
        w = torch.ones(2, dim)
        assert steps.norm_rotate(q, w, w, cos, sin, 1e-6) is None, dim
    cos, sin = _tables(1, 3, 64, seed=0)
    assert (
        steps.norm_rotate(
            torch.randn(1, 3, 2, 64).double(), torch.ones(2, 64), torch.ones(2, 64), cos, sin, 1e-6
        )
        is None
    )


class _Counting:
    """The C steps, counting the calls each method refused (returned ``None``)."""

    def __init__(self, steps: Any) -> None:
        self.steps, self.calls, self.refused = steps, 0, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.steps, name)

        def counted(*args: Any) -> Any:
            out = method(*args)
            self.calls += 1
            self.refused += out is None
            return out

        return counted


def _error(h: Any, exact: Any) -> float:
    """Mean relative distance of hidden states ``h`` from ``exact``, row by row."""
    return float(((h - exact).norm(dim=-1) / exact.norm(dim=-1)).mean())


def _hidden(
    model: Any, monkeypatch: pytest.MonkeyPatch, use_steps: Any | None, dtype: Any
) -> tuple[Any, Any]:
    """Last hidden states of a few rows after a prefix, from a :class:`LeanForward` over a
    copy of ``model`` in ``dtype``, with the C steps (``use_steps``) or torch's."""
    monkeypatch.setattr(_lean, "cpu_elementwise", lambda: use_steps)
    lean = _lean.LeanForward(copy.deepcopy(model).to(dtype).model)
    g = _gen(11)
    rows = [torch.randint(1000, 5000, (n,), generator=g).tolist() for n in (5, 31, 17, 60, 2)]
    prefix = lean.prefix(torch.randint(1000, 5000, (23,), generator=g).tolist())
    return lean, lean.last_hidden(rows, prefix, pad_id=0)


@pytest.mark.parametrize(
    "shape",
    [
        {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64},
        {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 80},
        {"hidden_size": 200, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 72},
        {"hidden_size": 72, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 24},
    ],
    ids=["head-64", "head-80", "width-200-head-72", "width-72-head-24"],
)
def test_the_bf16_forward_with_the_steps_is_as_close_to_float32_as_with_torch(
    steps: Any, monkeypatch: pytest.MonkeyPatch, shape: dict[str, int]
) -> None:
    """Norm weights that are not ones: with the C steps they stay unfolded (applied in the
    norm's pass, in float32) and the hidden states are no further from float32's than with
    torch's steps (which fold them into the bf16 weights). Every step runs in C, on head
    sizes and widths that are not a multiple of 32 or 16 too."""
    from transformers import AutoModelForCausalLM

    config = {"intermediate_size": 3 * shape["hidden_size"], "num_hidden_layers": 3, **shape}
    folder = cached_checkpoint(config, dtype="bfloat16", cache_dir=default_cache_dir())
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).eval()
    g = _gen(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.25)
    kernel_on = lambda dtype: _cpu_attention.load_kernel(dtype)  # noqa: E731
    monkeypatch.setattr(_lean, "cpu_attention", kernel_on)
    _, exact = _hidden(model, monkeypatch, None, torch.float32)
    counting = _Counting(steps)
    with_c, ours = _hidden(model, monkeypatch, counting, torch.bfloat16)
    assert counting.calls > 0 and counting.refused == 0, (counting.calls, counting.refused)
    with_torch, theirs = _hidden(model, monkeypatch, None, torch.bfloat16)
    assert with_c._layers[0].input_norm is not None  # unfolded with the C steps
    if with_torch.packed:
        assert with_torch._layers[0].input_norm is None  # folded with torch's

    assert _error(ours, exact) <= 1.25 * _error(theirs, exact) + 1e-3, (
        _error(ours, exact),
        _error(theirs, exact),
    )


def test_the_forward_uses_the_steps_in_bf16_on_cpu_only(
    steps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the library runs, a bf16 CPU forward takes the C steps (and says so in the
    load log), a float32 one keeps torch's; ``QWEN3_RERANK_CPU_ATTENTION=sdpa`` turns
    them off."""
    from qwen3_rerank_core import Qwen3Reranker

    monkeypatch.setattr(_lean, "cpu_elementwise", lambda: steps)
    folder = cached_checkpoint(dtype="bfloat16", cache_dir=default_cache_dir())
    with Qwen3Reranker(model=str(folder), device="cpu", dtype="bfloat16") as rr:
        backend = rr._get_backend()
        assert backend._lean.cpu_steps  # type: ignore[attr-defined]
        assert "element-wise steps in C" in backend._forward_name()  # type: ignore[attr-defined]
    with Qwen3Reranker(model=str(folder), device="cpu", dtype="float32") as rr:
        assert not rr._get_backend()._lean.cpu_steps  # type: ignore[attr-defined]
    monkeypatch.setattr(_lean, "cpu_elementwise", _cpu_elementwise.cpu_elementwise.__wrapped__)
    monkeypatch.setenv("QWEN3_RERANK_CPU_ATTENTION", "sdpa")
    with Qwen3Reranker(model=str(folder), device="cpu", dtype="bfloat16") as rr:
        assert not rr._get_backend()._lean.cpu_steps  # type: ignore[attr-defined]


def test_a_head_size_the_steps_refuse_falls_back_to_torch_per_step(
    steps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head size over the C q/k step's 1024: that step runs in torch (with the norm
    weights unfolded), the others in C, and the bf16 hidden states stay as close to
    float32 as with torch's steps throughout."""
    from transformers import AutoModelForCausalLM

    config = {
        "hidden_size": 64,
        "intermediate_size": 192,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "num_hidden_layers": 2,
        "head_dim": 1040,
    }
    folder = cached_checkpoint(config, dtype="bfloat16", cache_dir=default_cache_dir())
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).eval()
    _, exact = _hidden(model, monkeypatch, None, torch.float32)
    counting = _Counting(steps)
    with_c, ours = _hidden(model, monkeypatch, counting, torch.bfloat16)
    _, theirs = _hidden(model, monkeypatch, None, torch.bfloat16)
    assert with_c.cpu_steps and with_c._layers[0].input_norm is not None
    assert 0 < counting.refused < counting.calls, (counting.refused, counting.calls)

    assert bool(torch.isfinite(ours).all())
    assert _error(ours, exact) <= 1.25 * _error(theirs, exact) + 1e-3, (
        _error(ours, exact),
        _error(theirs, exact),
    )
