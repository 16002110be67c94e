/* The lean forward's element-wise steps in one pass each, for CPUs with AVX-512 BF16
 * (qwen3_rerank_core). Built with _attention_avx512.c into one library
 * (_cpu_attention.py) and used where that library is (_cpu_elementwise.py).
 *
 * The residual stream is float32, the projections' inputs and outputs bfloat16. Every
 * step reads and writes each element once, with the arithmetic of the torch steps it
 * replaces (LeanForward._norm, _residual_add, _norm_rotate): float32 throughout, one
 * rounding to bf16 at the end (round to nearest even). Rows are shared out among the
 * threads of the calling thread's OpenMP team (torch's).
 */
#include <string.h>
#include <math.h>

#include "_avx512_common.h"

/* The largest head dimension norm_rotate takes (its row is kept on the stack). */
#define MAX_HEAD_DIM 1024

/* For each of T rows of n floats (x, row stride x_s): with delta (bf16, row stride d_s),
 * x += delta first, in place; then out = bf16(x * (1 / sqrt(mean(x^2) + eps)) * weight)
 * (weight: n floats, or NULL for none), out's row stride out_s. Any n >= 1 (a row's last
 * partial vector in masked lanes). Returns 0, or 1 for arguments it does not take. */
int qwen3_rerank_add_rms_norm(float *x, int64_t x_s, const bf16 *delta, int64_t d_s,
                              const float *weight, float eps, bf16 *out, int64_t out_s, int64_t T,
                              int64_t n, int threads) {
    if (n < 1 || threads < 1) return 1;
#pragma omp parallel for num_threads(threads) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++) {
        float *row = x + t * x_s;
        __m512 squares = _mm512_setzero_ps();
        if (delta) {
            const bf16 *dr = delta + t * d_s;
            EACH_VECTOR(c, m, n, {
                __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + c), load_bf16_lanes(dr + c, m));
                _mm512_mask_storeu_ps(row + c, m, v);
                squares = _mm512_fmadd_ps(v, v, squares);
            });
        } else {
            EACH_VECTOR(c, m, n, {
                __m512 v = _mm512_maskz_loadu_ps(m, row + c);
                squares = _mm512_fmadd_ps(v, v, squares);
            });
        }
        const __m512 inv =
            _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(squares) / (float)n + eps));
        bf16 *o = out + t * out_s;
        EACH_VECTOR(c, m, n, {
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + c), inv);
            if (weight) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + c));
            store_bf16_lanes(o + c, v, m);
        });
    }
    return 0;
}

/* x += delta (float32 += bf16) for T rows of n (any n >= 1), in place. Returns 0, or 1. */
int qwen3_rerank_add(float *x, int64_t x_s, const bf16 *delta, int64_t d_s, int64_t T,
                     int64_t n, int threads) {
    if (n < 1 || threads < 1) return 1;
#pragma omp parallel for num_threads(threads) schedule(static) if (T > 1)
    for (int64_t t = 0; t < T; t++) {
        float *row = x + t * x_s;
        const bf16 *dr = delta + t * d_s;
        EACH_VECTOR(c, m, n, {
            __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + c), load_bf16_lanes(dr + c, m));
            _mm512_mask_storeu_ps(row + c, m, sum);
        });
    }
    return 0;
}

/* Per-head RMSNorm then the rotary embedding of x, (B, S, heads, D) bf16 (x_f32: float32,
 * a product's unrounded output; strides xb, xs, xh in elements, the head dimension
 * contiguous), into out, (B, S, heads, D) bf16 contiguous:
 *
 *   out[c] = bf16((x[c] * cos[c] * w[c] + x[c ^ half] * sin[c] * ws[c]) / rms(x))
 *
 * with c ^ half the other half's element, cos and sin (signed: the first half negated)
 * the position's tables, float32 (strides cb (0: shared by the batch) and cs, the head
 * dimension contiguous), w the head's norm weight and ws the same with its halves swapped,
 * (heads, D) float32 contiguous. D: even, at most MAX_HEAD_DIM (a row's last partial
 * vector in masked lanes). Returns 0, or 1 for a D it does not take. */
int qwen3_rerank_norm_rotate(const void *x, int x_f32, int64_t xb, int64_t xs, int64_t xh,
                             const float *cos, const float *sin, int64_t cb, int64_t cs,
                             const float *w, const float *ws, float eps, bf16 *out, int64_t B,
                             int64_t S, int64_t heads, int64_t D, int threads) {
    if (D < 2 || D % 2 != 0 || D > MAX_HEAD_DIM || threads < 1) return 1;
    const int64_t half = D / 2;
    const int whole_halves = half % 16 == 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (B * S > 1)
    for (int64_t r = 0; r < B * S; r++) {
        const int64_t b = r / S, s = r % S;
        const float *cr = cos + b * cb + s * cs, *sr = sin + b * cb + s * cs;
        float v[MAX_HEAD_DIM], swapped[MAX_HEAD_DIM];
        for (int64_t h = 0; h < heads; h++) {
            const int64_t at = b * xb + s * xs + h * xh;
            const float *wr = w + h * D, *wsr = ws + h * D;
            __m512 squares = _mm512_setzero_ps();
            EACH_VECTOR(c, m, D, {
                __m512 e = x_f32 ? _mm512_maskz_loadu_ps(m, (const float *)x + at + c)
                                 : load_bf16_lanes((const bf16 *)x + at + c, m);
                _mm512_storeu_ps(v + c, e);
                squares = _mm512_fmadd_ps(e, e, squares);
            });
            /* where a half is not whole vectors (D not a multiple of 32), x with its halves
             * swapped, as floats; else each vector's partner is read in place */
            if (!whole_halves) {
                memcpy(swapped, v + half, (size_t)half * sizeof(float));
                memcpy(swapped + half, v, (size_t)half * sizeof(float));
            }
            const __m512 inv =
                _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(squares) / (float)D + eps));
            bf16 *o = out + (r * heads + h) * D;
            EACH_VECTOR(c, m, D, {
                __m512 rot_cos = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, cr + c),
                                               _mm512_maskz_loadu_ps(m, wr + c));
                __m512 rot_sin = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, sr + c),
                                               _mm512_maskz_loadu_ps(m, wsr + c));
                __m512 e = _mm512_mul_ps(_mm512_loadu_ps(v + c), rot_cos);
                const float *partner =
                    !whole_halves ? swapped + c : (c < half ? v + c + half : v + c - half);
                e = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, partner), rot_sin, e);
                store_bf16_lanes(o + c, _mm512_mul_ps(e, inv), m);
            });
        }
    }
    return 0;
}
