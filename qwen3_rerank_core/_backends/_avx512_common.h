/* What the kernels of qwen3_rerank_core share: bf16 loads and stores (whole vectors and a
 * row's last, partial one), exp (AVX-512). */
#ifndef QWEN3_RERANK_AVX512_COMMON_H
#define QWEN3_RERANK_AVX512_COMMON_H

#include <immintrin.h>
#include <stdint.h>

typedef uint16_t bf16;

/* 16 float32 rounded to bf16 (to nearest even). */
static inline void store_bf16(bf16 *p, __m512 x) {
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(x));
}

/* The lanes of a vector at c of a row n long: all 16, or the row's last n - c. */
static inline __mmask16 lanes(int64_t c, int64_t n) {
    return n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1u);
}

/* Runs the statements that follow (the macro's last argument) for each vector c of a row
 * n long, with m its lanes: the whole vectors first, with m a constant 0xFFFF (the compiler
 * drops the masks: the same code as without them), then the partial last one if any. */
#define EACH_VECTOR(c, m, n, ...)                                                           \
    do {                                                                                    \
        int64_t c = 0;                                                                      \
        for (; c + 16 <= (n); c += 16) {                                                    \
            const __mmask16 m = 0xFFFF;                                                     \
            __VA_ARGS__                                                                     \
        }                                                                                   \
        if (c < (n)) {                                                                      \
            const __mmask16 m = lanes(c, n);                                                \
            __VA_ARGS__                                                                     \
        }                                                                                   \
    } while (0)

/* The first lanes of 16 bf16 widened to float32 (exact), the rest 0 (nothing read past
 * them). */
static inline __m512 load_bf16_lanes(const bf16 *p, __mmask16 m) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}

/* The first lanes of 16 float32 rounded to bf16 and stored (nothing written past them). */
static inline void store_bf16_lanes(bf16 *p, __m512 x, __mmask16 m) {
    _mm256_mask_storeu_epi16(p, m, (__m256i)_mm512_cvtneps_pbh(x));
}

/* exp(x), float32 (Cephes' expf polynomial, relative error ~2e-7); 0 below -87 (-inf: a
 * key the row does not see), +inf above ~88.7. */
static inline __m512 exp512(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
    __m512 f = _mm512_fnmadd_ps(n, ln2_hi, x);
    f = _mm512_fnmadd_ps(n, ln2_lo, f);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201e-1f));
    __m512 f2 = _mm512_mul_ps(f, f);
    p = _mm512_fmadd_ps(p, f2, _mm512_add_ps(f, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

#endif
