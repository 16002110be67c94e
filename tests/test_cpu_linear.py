"""Our bf16 product kernel with float32 results (``_backends/_cpu_linear.py``).

The kernel is held to float64 arithmetic on the same bf16 operands, within float32's
summation bound (plain and accumulated products) or one bf16 rounding (the gated SwiGLU
product), on shapes that are not multiples of its tiles (odd K, N past a panel, M past a
row block, one row); the same bits on any thread count; inputs it does not take are
refused. Then the lean forward with it: chosen in bf16 where the C steps run (not compiled,
not with ``QWEN3_RERANK_CPU_ATTENTION=sdpa``, not on AMX), said in the load log, and its
hidden states no further from float32 than with oneDNN's products. Where this CPU cannot
build or run the library (no AVX-512 BF16, no C compiler), the kernel tests skip.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from qwen3_rerank_core._backends import _cpu_attention, _cpu_linear, _lean  # noqa: E402
from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir  # noqa: E402

RUNNABLE = _cpu_attention.unrunnable_reason(torch)

#: (rows M, inner K, outputs N): tails of every loop (rows past a multiple of the kernel's 8,
#: K odd, N past a 32-column panel or under one), a single row, the 0.6B's shapes, and a K
#: over one pass's 4096 (three passes, the last one of one element).
SHAPES = [
    (1, 1, 1),
    (5, 7, 3),
    (13, 33, 47),
    (9, 64, 96),
    (25, 1023, 17),
    (200, 256, 160),
    (300, 1024, 2048),
    (40, 3072, 1024),
    (30, 8193, 40),
]


@pytest.fixture(scope="module")
def products() -> _cpu_linear.CpuLinear:
    if RUNNABLE is not None:
        pytest.skip(f"kernels: {RUNNABLE}")
    return _cpu_linear.load_linear()


def _operands(m: int, k: int, n: int, seed: int) -> tuple[Any, Any, Any]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).bfloat16()
    w = (torch.randn(n, k, generator=g) * k**-0.5).bfloat16()
    bias = torch.randn(n, generator=g)
    return x, w, bias


def _summation_bound(x: Any, w: Any, extra: Any | None = None) -> Any:
    """float32's bound for the products' sums of K terms (recursive summation), plus the
    bias's and ``extra``'s share."""
    k = x.shape[-1]
    magnitude = x.double().abs() @ w.double().abs().T
    if extra is not None:
        magnitude = magnitude + extra.double().abs()
    return (k + 2) * 2.0**-24 * magnitude + 1e-30


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_a_product_is_float64_s_within_float32_summation(
    products: Any, m: int, k: int, n: int
) -> None:
    x, w, bias = _operands(m, k, n, seed=m + k + n)
    packed = products.pack(w, bias)
    got = products(x, packed)
    assert got.dtype == torch.float32 and got.shape == (m, n)
    want = x.double() @ w.double().T + bias.double()
    assert bool(((got.double() - want).abs() <= _summation_bound(x, w, bias)).all())
    # Closer to the exact sums than the product rounded to bf16 (oneDNN's output).
    assert float((got.double() - want).abs().max()) < float(
        (want.bfloat16().double() - want).abs().max()
    )


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_a_product_added_into_a_stream_in_place(products: Any, m: int, k: int, n: int) -> None:
    x, w, _ = _operands(m, k, n, seed=3 * m + k)
    stream = torch.randn(m, n)
    before = stream.clone()
    got = products(x, products.pack(w, None), into=stream)
    assert got is stream
    want = before.double() + x.double() @ w.double().T
    assert bool(((stream.double() - want).abs() <= _summation_bound(x, w, before)).all())


@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_the_gated_product_is_swiglu_rounded_once(products: Any, m: int, k: int, n: int) -> None:
    x, w, _ = _operands(m, k, 2 * n, seed=m + 5 * n)
    bias = torch.randn(2 * n)
    got = products(x, products.pack(w, bias, mode=_cpu_linear.SWIGLU))
    assert got.dtype == torch.bfloat16 and got.shape == (m, n)
    both = x.double() @ w.double().T + bias.double()
    gate, up = both[:, :n], both[:, n:]
    want = torch.nn.functional.silu(gate) * up
    # One bf16 rounding (half an ulp: 2^-9 relative) and float32's error in the sums,
    # carried through silu(g) * u (|d/dg| <= 1.1 |u|, |d/du| = |silu(g)|).
    sums = _summation_bound(x, w, bias)
    slack = 1.1 * up.abs() * sums[:, :n] + gate.abs() * sums[:, n:] + 1e-6 * want.abs()
    assert bool(((got.double() - want).abs() <= want.abs() * 2.0**-8 + slack + 1e-30).all())


def test_the_same_bits_on_any_thread_count(products: Any) -> None:
    """Each output is one sum in one order, whichever thread computes it: the rows split
    among the threads (many rows) or the panels (few)."""
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2, 3):
            torch.set_num_threads(n_threads)
            for m in (7, 700):
                x, w, bias = _operands(m, 96, 200, seed=m)
                gate_up = torch.cat([w, w.flip(0)])
                results.append(
                    (
                        products(x, products.pack(w, bias)),
                        products(x, products.pack(gate_up, None, mode=_cpu_linear.SWIGLU)),
                    )
                )
    finally:
        torch.set_num_threads(threads)
    for i in range(2, len(results)):
        first = results[i % 2]
        assert all(torch.equal(a, b) for a, b in zip(first, results[i], strict=True))


def test_strided_rows_are_read_in_place(products: Any) -> None:
    """Rows of a wider tensor (the lean forward's views): the same result as contiguous."""
    x, w, _ = _operands(10, 64, 48, seed=1)
    wide = torch.zeros(10, 100, dtype=torch.bfloat16)
    wide[:, 20:84] = x
    packed = products.pack(w, None)
    assert torch.equal(products(wide[:, 20:84], packed), products(x, packed))


def test_inputs_it_does_not_take(products: Any) -> None:
    """Packing refuses a weight that is not 2-D bf16 or a gated pair of odd rows, or a bias
    of the wrong size (``ValueError``); a call returns ``None`` (the caller runs torch's)
    for another dtype, another inner size or an ``into`` it cannot add to."""
    x, w, _ = _operands(4, 16, 8, seed=0)
    for bad in (w.float(), w[0], w[:, :0]):
        with pytest.raises(ValueError, match="bfloat16 weight"):
            products.pack(bad, None)
    with pytest.raises(ValueError, match="even row count, not 7"):
        products.pack(w[:7], None, mode=_cpu_linear.SWIGLU)
    with pytest.raises(ValueError, match=r"bias of 8 values, not \(3,\)"):
        products.pack(w, torch.zeros(3))
    packed = products.pack(w, None)
    assert products(x.float(), packed) is None
    assert products(x[:, :8], packed) is None
    assert products(x, packed, into=torch.zeros(4, 8).double()) is None
    assert products(x, packed, into=torch.zeros(8, 4).T) is None
    gated = products.pack(w, None, mode=_cpu_linear.SWIGLU)
    assert products(x, gated, into=torch.zeros(4, 4)) is None


# ---------------------------------------------------------------- the lean forward


def _bf16_model(config: dict[str, int] | None = None) -> Any:
    from transformers import AutoModelForCausalLM

    folder = cached_checkpoint(config or "tiny", dtype="bfloat16", cache_dir=default_cache_dir())
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16).eval()


def _hidden(lean: Any) -> Any:
    rows = [list(range(5, 40)), list(range(7, 19)), list(range(50, 71))]
    with torch.inference_mode():
        return lean.last_hidden(rows, lean.prefix([1, 2, 3, 4, 5, 6]), pad_id=0)


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 80},
        {"hidden_size": 200, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 72},
    ],
    ids=["tiny", "head-80", "width-200"],
)
def test_the_forward_on_our_products_is_closer_to_float32(
    products: Any, monkeypatch: pytest.MonkeyPatch, shape: dict[str, int]
) -> None:
    """The bf16 lean forward with our products (float32 results: no rounding of the
    products' outputs) against the same with oneDNN's, both against float32 on the same
    bf16-saved weights: every product runs on our kernel, and the mean deviation of the
    hidden states is no larger (10 % slack: on one draw of a tiny random model the other
    roundings can outweigh the ones saved; ``benchmarks/bf16_accuracy.py`` measures the
    gain over many), on widths and head sizes that are not multiples of 32 too."""
    config = {"num_hidden_layers": 3, **shape}
    if shape:
        config["intermediate_size"] = 3 * shape["hidden_size"]
    monkeypatch.setattr(_lean, "cpu_linear", lambda: products)
    ours = _lean.LeanForward(_bf16_model(config).model)
    assert ours.cpu_products and ours.cpu_steps
    layer = ours._layers[0]
    assert all(
        isinstance(p, _lean._Product) for p in (layer.qkv, layer.o, layer.gate_up, layer.down)
    )
    monkeypatch.setattr(_lean, "cpu_linear", lambda: None)
    onednn = _lean.LeanForward(_bf16_model(config).model)
    assert not onednn.cpu_products
    exact = _hidden(_lean.LeanForward(_bf16_model(config).model.float()))
    got, theirs = _hidden(ours), _hidden(onednn)
    assert bool(torch.isfinite(got).all())
    ours_error = float((got - exact).abs().mean())
    theirs_error = float((theirs - exact).abs().mean())
    assert ours_error <= 1.1 * theirs_error, (ours_error, theirs_error)


def test_the_forward_uses_our_products_in_eager_bf16_only(
    products: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """bf16 on CPU where the C steps run: our products, said in the load log; float32,
    dense weights (``pack=False``) and ``compile=True`` keep theirs."""
    from qwen3_rerank_core import Qwen3Reranker

    monkeypatch.setattr(_lean, "cpu_linear", lambda: products)
    folder = cached_checkpoint(dtype="bfloat16", cache_dir=default_cache_dir())
    with (
        caplog.at_level(logging.INFO, logger="qwen3_rerank_core"),
        Qwen3Reranker(model=str(folder), device="cpu", dtype="bfloat16") as rr,
    ):
        assert rr._get_backend()._lean.cpu_products  # type: ignore[attr-defined]
    assert "bf16 products on our CPU kernel (float32 results)" in caplog.text
    with Qwen3Reranker(model=str(folder), device="cpu", dtype="float32") as rr:
        assert not rr._get_backend()._lean.cpu_products  # type: ignore[attr-defined]
    model = _bf16_model()
    assert not _lean.LeanForward(model.model, pack=False).cpu_products
    assert not _lean.LeanForward(_bf16_model().model, compile=True).cpu_products


def test_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our products where the kernels' library runs, except on AMX (oneDNN uses its tiles)
    and with ``QWEN3_RERANK_CPU_ATTENTION=sdpa`` (every kernel of ours off)."""
    monkeypatch.setattr(_cpu_linear, "library_unavailable_reason", lambda torch: None)
    monkeypatch.setattr(_cpu_linear, "cpu_has", lambda torch, name: False)
    assert _cpu_linear.unavailable_reason(torch) is None
    monkeypatch.setattr(
        _cpu_linear, "cpu_has", lambda torch, name: name == "_is_amx_tile_supported"
    )
    assert "AMX" in (_cpu_linear.unavailable_reason(torch) or "")
    monkeypatch.undo()
    monkeypatch.setenv("QWEN3_RERANK_CPU_ATTENTION", "sdpa")
    assert "sdpa" in (_cpu_linear.unavailable_reason(torch) or "")


def test_a_stream_the_kernel_cannot_add_into_gets_the_product_back(
    products: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the residual stream is not a contiguous float32 tensor, the product is
    returned for the caller's add instead of added in place (nothing is lost)."""
    monkeypatch.setattr(_lean, "cpu_linear", lambda: products)
    lean = _lean.LeanForward(_bf16_model().model)
    layer = lean._layers[0]
    width = layer.o.weight.in_features
    x = torch.randn(1, 3, width).bfloat16()
    stream = torch.zeros(1, layer.o.weight.out_features, 3).transpose(1, 2)
    delta = lean._into(layer.o, x, stream)
    assert delta is not None and delta.shape == stream.shape
    assert bool((stream == 0).all())
    contiguous = stream.contiguous()
    assert lean._into(layer.o, x, contiguous) is None
    assert torch.allclose(contiguous, delta)
