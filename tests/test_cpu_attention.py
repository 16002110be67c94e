"""Our CPU attention kernels (``qwen3_rerank_core/_backends/_cpu_attention.py``): the AVX-512
BF16 one and the AVX2 float32 one.

Each kernel is held to torch's SDPA: against attention of the same inputs in a wider type
(float32 for bf16 inputs, float64 for float32 ones) it must be as close as SDPA in its
dtype is, on head sizes 2-128 (odd ones too in float32), 1-4 query heads a key/value head,
with and without a prefix, for whole rows (causal) and for one query a row (the last
layer's), on the strided layouts the lean forward passes, padded and ragged. Where this CPU
cannot run a kernel (no AVX-512 BF16, no AVX2, no C compiler) its tests skip; the policy
tests run everywhere.
"""

from __future__ import annotations

import logging
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from recipe import OfficialRecipe  # noqa: E402

from qwen3_rerank_core import Qwen3Reranker  # noqa: E402
from qwen3_rerank_core._backends import _cpu_attention, _lean_ops  # noqa: E402
from qwen3_rerank_core.testing import cached_checkpoint, default_cache_dir  # noqa: E402

RUNNABLE = _cpu_attention.unrunnable_reason(torch)
needs_kernel = pytest.mark.skipif(RUNNABLE is not None, reason=f"kernel: {RUNNABLE}")
RUNNABLE_F32 = _cpu_attention.unrunnable_reason(torch, _cpu_attention.AVX2)
needs_f32 = pytest.mark.skipif(RUNNABLE_F32 is not None, reason=f"float32 kernel: {RUNNABLE_F32}")
#: Why each dtype's kernel cannot run here (``None``: it can).
UNRUNNABLE = {torch.bfloat16: RUNNABLE, torch.float32: RUNNABLE_F32}
BOTH = pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "f32"])


def _skip_unless_runnable(dtype: Any) -> None:
    reason = UNRUNNABLE[dtype]
    if reason is not None:
        pytest.skip(f"{dtype} kernel: {reason}")


def _kernel_of(dtype: Any) -> Any:
    """The kernel computing in ``dtype`` (the test skips where it cannot run here)."""
    _skip_unless_runnable(dtype)
    return _cpu_attention.load_kernel(dtype)


@pytest.fixture(scope="module")
def kernel() -> Any:
    return _kernel_of(torch.bfloat16)


@pytest.fixture(scope="module")
def kernel32() -> Any:
    return _kernel_of(torch.float32)


class Case:
    """Random bf16 attention inputs in the lean forward's layouts."""

    def __init__(
        self,
        batch: int,
        heads: int,
        kv_heads: int,
        rows: int,
        prefix: int,
        dim: int,
        seed: int,
        dtype: Any = torch.bfloat16,
    ) -> None:
        g = torch.Generator().manual_seed(seed)

        def rand(*shape: int, scale: float = 1.0) -> Any:
            return (torch.randn(*shape, generator=g) * scale).to(dtype)

        # (batch, rows, heads, dim) seen as (batch, heads, rows, dim): the forward's views.
        self.q = rand(batch, rows, heads, dim, scale=2.0).transpose(1, 2)
        self.k = rand(batch, rows, kv_heads, dim, scale=2.0).transpose(1, 2)
        self.v = rand(batch, rows, kv_heads, dim).transpose(1, 2)
        self.past = None
        if prefix:
            # The prefix's keys and values: (1, kv_heads, prefix, dim) views, as stored.
            self.past = (
                rand(1, prefix, kv_heads, dim, scale=2.0).transpose(1, 2),
                rand(1, prefix, kv_heads, dim).transpose(1, 2),
            )
        self.prefix, self.scale, self.gqa = prefix, dim**-0.5, heads != kv_heads
        self.lengths = torch.randint(1, rows + 1, (batch,), generator=g)

    def joined(self) -> tuple[Any, Any]:
        if self.past is None:
            return self.k, self.v
        batch = self.k.shape[0]
        return (
            torch.cat([self.past[0].expand(batch, -1, -1, -1), self.k], dim=2),
            torch.cat([self.past[1].expand(batch, -1, -1, -1), self.v], dim=2),
        )

    def last_queries(self) -> tuple[Any, Any]:
        """Each row's query at its last position, and the mask of the keys it sees."""
        q = torch.stack([self.q[b, :, n - 1] for b, n in enumerate(self.lengths.tolist())])
        keys = self.prefix + self.k.shape[2]
        seen = torch.arange(keys)[None] < (self.lengths + self.prefix)[:, None]
        return q[:, :, None], seen[:, None, None]

    def sdpa(self, q: Any, mask: Any | None, dtype: Any) -> Any:
        keys, values = self.joined()
        return _lean_ops.attention(
            q.to(dtype),
            keys.to(dtype),
            values.to(dtype),
            mask,
            self.scale,
            gqa=self.gqa,
            chunk=0,
        ).to(torch.float64 if dtype == torch.float64 else torch.float32)


SHAPES = [
    # batch, heads, kv_heads, rows, prefix, head_dim
    (3, 4, 2, 37, 0, 64),
    (2, 8, 2, 70, 17, 128),
    (5, 6, 2, 33, 80, 96),
    (1, 4, 4, 300, 80, 64),
    (4, 2, 1, 1, 9, 64),
    # head sizes an odd multiple of 16: the last 16 dimensions of the values alone
    (3, 4, 2, 41, 23, 80),
    (2, 3, 1, 19, 0, 48),
    # head sizes that are not a multiple of 16: the last vector's lanes masked
    (2, 4, 2, 29, 11, 72),
    (3, 2, 1, 17, 5, 40),
    (2, 6, 3, 21, 0, 24),
    (1, 2, 1, 12, 7, 104),
    (2, 2, 1, 9, 3, 2),
]


@needs_kernel
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}-h{}-kv{}-r{}-p{}-d{}".format(*s))
def test_as_close_to_float32_attention_as_sdpa_in_bf16(kernel: Any, shape: tuple[int, ...]) -> None:
    case = Case(*shape, seed=sum(shape))
    # whole rows, causal after the prefix
    exact = case.sdpa(case.q, None, torch.float32)
    ours = kernel(case.q, case.k, case.v, case.past, None, case.scale)
    assert ours.shape == exact.shape and ours.is_contiguous() and ours.dtype == torch.bfloat16
    sdpa = case.sdpa(case.q, None, torch.bfloat16)
    assert (ours.float() - exact).abs().max() <= 1.25 * (sdpa - exact).abs().max() + 2e-3
    # one query a row, seeing its keys up to its own position
    q, seen = case.last_queries()
    exact = case.sdpa(q, seen, torch.float32)
    ours = kernel(q, case.k, case.v, case.past, seen, case.scale)
    sdpa = case.sdpa(q, seen, torch.bfloat16)
    assert (ours.float() - exact).abs().max() <= 1.25 * (sdpa - exact).abs().max() + 2e-3


@BOTH
def test_the_same_bits_on_any_number_of_threads_and_layout(dtype: Any) -> None:
    kernel = _kernel_of(dtype)
    case = Case(2, 4, 2, 45, 20, 64, seed=7, dtype=dtype)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernel(case.q, case.k, case.v, case.past, None, case.scale)
        torch.set_num_threads(3)
        three = kernel(case.q, case.k, case.v, case.past, None, case.scale)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)
    past = tuple(t.contiguous() for t in case.past or ())
    dense = kernel(
        case.q.contiguous(), case.k.contiguous(), case.v.contiguous(), past, None, case.scale
    )
    assert torch.equal(one, dense)


def _packed(t: Any, lengths: list[int]) -> Any:
    """``(batch, heads, width, dim)`` -> the first ``lengths[b]`` positions of each row, one
    row after another: ``(1, heads, tokens, dim)``, a view of a ``(1, tokens, heads, dim)``
    tensor (the forward's layout)."""
    rows = [t[b, :, :n].transpose(0, 1) for b, n in enumerate(lengths)]
    return torch.cat(rows)[None].transpose(1, 2)


@BOTH
@pytest.mark.parametrize(("prefix", "dim"), [(0, 64), (23, 64), (23, 80), (23, 72)])
def test_ragged_rows_give_the_padded_rows_results(dtype: Any, prefix: int, dim: int) -> None:
    """Rows packed one after another (the forward's ragged batches) give the same bits as
    the same rows padded to one width, for whole rows and for one query a row; rows past a
    row's length are never computed."""
    kernel = _kernel_of(dtype)
    case = Case(4, 4, 2, 41, prefix, dim, seed=5 + prefix, dtype=dtype)
    lengths = [41, 7, 1, 30]
    length = torch.tensor(lengths)
    start = length.cumsum(0) - length
    q, k, v = (_packed(t, lengths) for t in (case.q, case.k, case.v))
    padded = kernel(case.q, case.k, case.v, case.past, None, case.scale)
    ragged = kernel(q, k, v, case.past, None, case.scale, ragged=(start, length))
    assert ragged.shape == (1, sum(lengths), 4, dim) and ragged.is_contiguous()
    want = torch.cat([padded[b, :n] for b, n in enumerate(lengths)])[None]
    assert torch.equal(ragged, want)
    case.lengths = length
    last_q, seen = case.last_queries()
    padded = kernel(last_q, case.k, case.v, case.past, seen, case.scale)
    ragged = kernel(last_q, k, v, case.past, seen, case.scale, ragged=(start, length))
    assert ragged.shape == (4, 1, 4, dim) and torch.equal(ragged, padded)
    # not ragged rows it can take: left to the caller (None)
    assert kernel(q, k, v, case.past, None, case.scale, ragged=(start + 1, length)) is None
    assert kernel(q[:, :, :5], k, v, case.past, None, case.scale, ragged=(start, length)) is None


@needs_kernel
def test_inputs_the_bf16_kernel_does_not_take_are_left_to_sdpa(kernel: Any) -> None:
    case = Case(1, 2, 1, 8, 0, 64, seed=1)
    q, k, v = case.q, case.k, case.v
    assert kernel(q.float(), k.float(), v.float(), None, None, 0.1) is None  # float32
    odd = torch.zeros(1, 2, 8, 9, dtype=torch.bfloat16)  # an odd head size
    assert kernel(odd, odd[:, :1], odd[:, :1], None, None, 0.1) is None
    assert kernel(q[:, :, :4], k, v, None, None, 0.1) is None  # rows != keys, no mask
    strided = torch.zeros(1, 2, 8, 128, dtype=torch.bfloat16)[..., ::2]  # head dim strided
    assert kernel(strided, k, v, None, None, 0.1) is None
    wrong_past = torch.zeros(1, 2, 3, 64, dtype=torch.bfloat16)  # 2 kv heads, not 1
    assert kernel(q, k, v, (wrong_past, wrong_past), None, 0.1) is None
    one = q[:, :, :1]
    assert kernel(one, k, v, None, torch.ones(1, 1, 1, 9, dtype=torch.bool), 0.1) is None


#: float32 shapes besides SHAPES: odd head sizes (the bf16 kernel takes pairs only), and
#: head sizes under one vector.
F32_SHAPES = [*SHAPES, (2, 3, 1, 13, 5, 7), (3, 4, 2, 26, 9, 33), (1, 2, 1, 5, 0, 1)]


@needs_f32
@pytest.mark.parametrize("shape", F32_SHAPES, ids=lambda s: "b{}-h{}-kv{}-r{}-p{}-d{}".format(*s))
def test_f32_as_close_to_float64_attention_as_sdpa_in_float32(
    kernel32: Any, shape: tuple[int, ...]
) -> None:
    case = Case(*shape, seed=sum(shape), dtype=torch.float32)
    for q, mask in ((case.q, None), case.last_queries()):
        exact = case.sdpa(q, mask, torch.float64)
        ours = kernel32(q, case.k, case.v, case.past, mask, case.scale)
        assert ours.dtype == torch.float32 and ours.is_contiguous()
        assert ours.shape == exact.shape
        sdpa = case.sdpa(q, mask, torch.float32)
        err, sdpa_err = (float((t.double() - exact).abs().max()) for t in (ours, sdpa))
        # float32 scores of magnitude ~10 here: each carries ~1e-6 of rounding, whose
        # order differs from SDPA's (the scale applied after the dot product, our exp).
        assert err <= 2 * sdpa_err + 3e-6, (err, sdpa_err)


@needs_f32
def test_inputs_the_f32_kernel_does_not_take_are_left_to_sdpa(kernel32: Any) -> None:
    case = Case(1, 2, 1, 8, 0, 64, seed=1, dtype=torch.float32)
    q, k, v = case.q, case.k, case.v
    assert kernel32(q.bfloat16(), k.bfloat16(), v.bfloat16(), None, None, 0.1) is None
    assert kernel32(q.double(), k.double(), v.double(), None, None, 0.1) is None
    assert kernel32(q[:, :, :4], k, v, None, None, 0.1) is None  # rows != keys, no mask
    strided = torch.zeros(1, 2, 8, 128)[..., ::2]  # head dim strided
    assert kernel32(strided, k, v, None, None, 0.1) is None
    wrong_past = torch.zeros(1, 2, 3, 64)  # 2 kv heads, not 1
    assert kernel32(q, k, v, (wrong_past, wrong_past), None, 0.1) is None
    one = q[:, :, :1]
    assert kernel32(one, k, v, None, torch.ones(1, 1, 1, 9, dtype=torch.bool), 0.1) is None
    odd = torch.randn(1, 2, 8, 9)  # an odd head size: taken in float32
    assert kernel32(odd, odd[:, :1], odd[:, :1], None, None, 0.1).shape == (1, 8, 2, 9)


def test_policy_float32_kernel_on_avx2_cpus_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float32 kernel runs where torch's CPU capability is AVX2 (where it was
    measured); SDPA on AVX-512 CPUs, and none at all without AVX2."""
    capability = {"now": "AVX2"}
    monkeypatch.delenv("QWEN3_RERANK_CPU_ATTENTION", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability["now"])
    monkeypatch.setattr(_cpu_attention.platform, "system", lambda: "Linux")
    monkeypatch.setattr(_cpu_attention.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(_cpu_attention.shutil, "which", lambda name: "/usr/bin/cc")
    assert _cpu_attention.unavailable_reason(torch, torch.float32) is None
    capability["now"] = "AVX512"
    assert "AVX512, not AVX2" in str(_cpu_attention.unavailable_reason(torch, torch.float32))
    assert _cpu_attention.unrunnable_reason(torch, _cpu_attention.AVX2) is None  # can run
    capability["now"] = "DEFAULT"
    assert "no AVX2" in str(_cpu_attention.unavailable_reason(torch, torch.float32))
    capability["now"] = "AVX2"
    monkeypatch.setenv("QWEN3_RERANK_CPU_ATTENTION", "sdpa")
    assert _cpu_attention.unavailable_reason(torch, torch.float32) == (
        "QWEN3_RERANK_CPU_ATTENTION=sdpa"
    )
    assert "float16" in str(_cpu_attention.unavailable_reason(torch, torch.float16))
    assert _cpu_attention.cpu_attention.__wrapped__(torch.float16) is None
    with pytest.raises(ValueError, match="float16"):
        _cpu_attention.load_kernel(torch.float16)


@BOTH
def test_the_library_is_built_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dtype: Any
) -> None:
    _skip_unless_runnable(dtype)
    library = _cpu_attention.library_for(torch, dtype)
    assert library is not None
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = _cpu_attention._build(library)
    assert first.name.startswith(f"kernels-{library.name}-")
    assert first.parent == tmp_path / "qwen3-rerank" / "kernels" and first.exists()
    stamp = first.stat().st_mtime_ns
    assert _cpu_attention._build(library) == first and first.stat().st_mtime_ns == stamp
    assert not list(first.parent.glob("*.partial"))


@needs_kernel
def test_a_cache_folder_it_cannot_write_builds_in_a_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "qwen3-rerank"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    library = _cpu_attention._build()
    assert library.exists() and tmp_path not in library.parents


def test_policy_sdpa_where_the_kernel_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWEN3_RERANK_CPU_ATTENTION", "sdpa")
    assert _cpu_attention.unavailable_reason(torch) == "QWEN3_RERANK_CPU_ATTENTION=sdpa"
    assert _cpu_attention.library_unavailable_reason(torch) == "QWEN3_RERANK_CPU_ATTENTION=sdpa"
    monkeypatch.delenv("QWEN3_RERANK_CPU_ATTENTION")
    probes = {"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": True}
    monkeypatch.setattr(_cpu_attention, "cpu_has", lambda torch, probe: probes[probe])
    monkeypatch.setattr(_cpu_attention.platform, "system", lambda: "Linux")
    monkeypatch.setattr(_cpu_attention.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(_cpu_attention.shutil, "which", lambda name: "/usr/bin/cc")
    assert "AMX" in str(_cpu_attention.unavailable_reason(torch))
    # The element-wise steps of the same library run with AMX (torch's passes do not use it).
    assert _cpu_attention.library_unavailable_reason(torch) is None
    probes["_is_amx_tile_supported"] = False
    assert _cpu_attention.unavailable_reason(torch) is None
    probes["_is_avx512_bf16_supported"] = False
    assert _cpu_attention.unavailable_reason(torch) == "this CPU has no AVX-512 BF16"
    probes["_is_avx512_bf16_supported"] = True
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setattr(_cpu_attention.shutil, "which", lambda name: None)
    assert "no C compiler ('no-such-cc'" in str(_cpu_attention.unavailable_reason(torch))
    monkeypatch.setattr(_cpu_attention.platform, "machine", lambda: "aarch64")
    assert "not x86-64 Linux" in str(_cpu_attention.unavailable_reason(torch))


def test_a_failed_build_warns_and_leaves_sdpa(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise subprocess.CalledProcessError(1, ["cc"], stderr="cc: error: bad flag (test)")

    monkeypatch.setattr(_cpu_attention, "unavailable_reason", lambda torch, dtype=None: None)
    monkeypatch.setattr(_cpu_attention, "_build", lambda library: broken())
    for dtype in (torch.bfloat16, torch.float32):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="qwen3_rerank_core"):
            assert _cpu_attention.cpu_attention.__wrapped__(dtype) is None
        assert "could not be built: cc: error: bad flag (test)" in caplog.text


def _documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["the", "of", "river", "capital", "Beijing", "gravity", "protein", "city", "is"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 120))) for _ in range(n)]


GQA4_D64 = {"num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64}
GQA2_D128 = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 128}


@needs_kernel
@pytest.mark.parametrize(
    ("shape", "compile"),
    [(GQA4_D64, False), (GQA2_D128, False), (GQA4_D64, True)],
    ids=["gqa4-d64-eager", "gqa2-d128-eager", "gqa4-d64-compiled"],
)
def test_the_lean_forward_on_the_kernel_is_as_close_to_the_recipe_as_on_sdpa(
    kernel: Any, monkeypatch: pytest.MonkeyPatch, shape: dict[str, int], compile: bool
) -> None:
    """bf16 scores with attention on the kernel against the same reranker on SDPA, both
    against the float32 recipe (prefix reuse, ragged and padded batches, the last layer's
    one query a row); on a CPU with AMX, where the policy keeps SDPA, the kernel is forced."""
    if compile and _lean_ops.missing_cpp_compiler() is not None:
        pytest.skip("compile=True needs a C++ compiler")
    monkeypatch.setattr(_lean_ops, "cpu_attention", lambda dtype: kernel)
    config = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, **shape}
    folder = cached_checkpoint(config, dtype="bfloat16", cache_dir=default_cache_dir())
    query, docs = "Which city is the capital of China?", _documents(20, seed=len(shape))
    exact = OfficialRecipe(folder).score(query, docs)
    with Qwen3Reranker(model=str(folder), device="cpu", dtype="bfloat16", compile=compile) as rr:
        lean = rr._get_backend()._lean  # type: ignore[attr-defined]
        lean.cpu_kernel = True
        ours = rr.score(query, docs)
        lean.cpu_kernel = False
        sdpa = rr.score(query, docs)
    dev = [abs(a - b) for a, b in zip(ours, exact, strict=True)]
    sdpa_dev = [abs(a - b) for a, b in zip(sdpa, exact, strict=True)]
    assert ours != sdpa  # the kernel ran: other roundings
    assert max(dev) <= 0.15  # the bf16 bound of test_precision.py
    assert sum(dev) / len(dev) <= 1.25 * sum(sdpa_dev) / len(sdpa_dev) + 1e-4


@BOTH
def test_the_forward_runs_ragged_batches_on_the_kernel_unpadded(
    dtype: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of very different lengths (ragged) reaches the kernel unpadded, every layer,
    and its hidden states match the same batch run padded (products on other row counts:
    float rounding apart)."""
    from transformers import AutoModelForCausalLM

    from qwen3_rerank_core._backends import _lean

    kernel = _kernel_of(dtype)
    monkeypatch.setattr(_lean_ops, "cpu_attention", lambda dtype: kernel)
    monkeypatch.setattr(_lean, "cpu_attention", lambda dtype: kernel)
    config = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, **GQA4_D64}
    folder = cached_checkpoint(config, dtype="bfloat16", cache_dir=default_cache_dir())
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    lean = _lean.LeanForward(model.model)
    assert lean.cpu_kernel
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(1000, 5000, (n,), generator=g).tolist() for n in (90, 4, 37, 1, 60)]
    prefix = lean.prefix(torch.randint(1000, 5000, (19,), generator=g).tolist())
    calls: list[bool] = []

    def spy(*args: Any) -> Any:
        out = _lean_ops.attend_ragged(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_lean, "attend_ragged", spy)
    ragged = lean.last_hidden(rows, prefix, pad_id=0)
    assert calls == [True] * 3  # every layer, on the kernel
    monkeypatch.setattr(_lean, "RAGGED_MIN_PADDING", 1.01)  # never ragged
    padded = lean.last_hidden(rows, prefix, pad_id=0)
    assert len(calls) == 3
    tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-4
    torch.testing.assert_close(ragged, padded, rtol=tolerance, atol=tolerance)


@needs_f32
@pytest.mark.parametrize(
    ("shape", "compile"),
    [(GQA4_D64, False), (GQA2_D128, False), (GQA4_D64, True)],
    ids=["gqa4-d64-eager", "gqa2-d128-eager", "gqa4-d64-compiled"],
)
def test_the_float32_forward_on_the_kernel_keeps_parity_with_the_recipe(
    kernel32: Any, monkeypatch: pytest.MonkeyPatch, shape: dict[str, int], compile: bool
) -> None:
    """float32 scores with attention on the AVX2 kernel (forced on where the policy keeps
    SDPA: an AVX-512 CPU) match the float32 recipe to 1e-5, the parity promise: prefix
    reuse, ragged and padded batches, the last layer's one query a row."""
    from qwen3_rerank_core._backends import _lean

    if compile and _lean_ops.missing_cpp_compiler() is not None:
        pytest.skip("compile=True needs a C++ compiler")
    calls: list[bool] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        out = kernel32(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_lean_ops, "cpu_attention", lambda dtype: counted)
    monkeypatch.setattr(_lean, "cpu_attention", lambda dtype: counted)
    config = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, **shape}
    folder = cached_checkpoint(config, dtype="float32", cache_dir=default_cache_dir())
    query, docs = "Which city is the capital of China?", _documents(20, seed=len(shape))
    exact = OfficialRecipe(folder).score(query, docs)
    with Qwen3Reranker(model=str(folder), device="cpu", dtype="float32", compile=compile) as rr:
        assert rr._get_backend()._lean.cpu_kernel  # type: ignore[attr-defined]
        ours = rr.score(query, docs)
    assert calls and all(calls)  # every attention call on the kernel
    assert max(abs(a - b) for a, b in zip(ours, exact, strict=True)) <= 1e-5
