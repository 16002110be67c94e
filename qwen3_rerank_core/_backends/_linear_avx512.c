/* Matrix products in bfloat16 with float32 results, for CPUs with AVX-512 BF16
 * (qwen3_rerank_core). Built with _attention_avx512.c into one library (_cpu_attention.py)
 * and used where that library is (_cpu_linear.py).
 *
 * out = a @ w.T (+ bias), a: (M, K) bf16 rows, w: (N, K) bf16, packed once by
 * qwen3_rerank_pack_bf16. The products take bf16 pairs and accumulate in float32
 * (VDPBF16PS), as oneDNN's do; unlike torch's CPU products, whose bf16 outputs are rounded
 * to bf16, the result stays float32 for the step that reads it:
 *
 *   STORE       out (float32, M x N) = a @ w.T + bias
 *   ACCUMULATE  out (float32, M x N) += a @ w.T + bias: into the residual stream in place
 *   SWIGLU      out (bf16, M x N) = silu(a @ gate.T + bias_g) * (a @ up.T + bias_u), one
 *               rounding: w holds gate's N rows then up's N rows
 *
 * Layout: w in panels of 32 output columns (SWIGLU: 16 of gate's and the same 16 of up's),
 * each panel K/2 pairs deep, panel[t][c] = (w[c][2t], w[c][2t+1]), zero past N and K; a
 * panel's pair t is one 64-byte line. Each thread takes a share of the panels (and of the
 * rows where panels are fewer than threads), by blocks of rows copied as pairs, MR rows
 * side by side; each micro-step multiplies MR rows (broadcast pairs) by a panel's 32
 * columns into 2 x MR float32 accumulators, over the whole of K (plain products with K
 * over KC: in passes of KC, each added into the float32 result), so that every epilogue
 * sees the finished sums. Any K >= 1 (an odd K's last pair reads one element),
 * any N >= 1 (the last panel's columns masked), any M >= 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_avx512_common.h"

#define MR 8 /* rows a micro-step: 16 accumulators (8: 0.98-1.00x oneDNN on 0.6B shapes, 12: 0.94-0.99x) */
#define NR 32 /* a panel's columns */

enum { STORE = 0, ACCUMULATE = 1, SWIGLU = 2 };

/* Output columns a panel yields. */
static inline int64_t panel_columns(int mode) { return mode == SWIGLU ? 16 : NR; }

/* Packed size of w in 32-bit words: panels x pairs x 32. */
int64_t qwen3_rerank_packed_words(int64_t N, int64_t K, int mode) {
    const int64_t per = panel_columns(mode);
    return (N + per - 1) / per * ((K + 1) / 2) * NR;
}

/* Row of w, or -1 (zeros), behind column c of panel p. */
static inline int64_t source_row(int64_t p, int64_t c, int64_t N, int mode) {
    if (mode != SWIGLU) {
        const int64_t n = p * NR + c;
        return n < N ? n : -1;
    }
    const int64_t n = p * 16 + (c % 16);
    if (n >= N) return -1;
    return c < 16 ? n : N + n;
}

/* w: (N, K) bf16 rows ldw apart ((2N, K) for SWIGLU) into out
 * (qwen3_rerank_packed_words(N, K, mode) words). Returns 0, or 1. */
int qwen3_rerank_pack_bf16(const bf16 *w, int64_t ldw, int64_t N, int64_t K, int mode,
                           uint32_t *out, int threads) {
    if (N < 1 || K < 1 || mode < STORE || mode > SWIGLU || threads < 1) return 1;
    const int64_t K2 = (K + 1) / 2, per = panel_columns(mode), panels = (N + per - 1) / per;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t p = 0; p < panels; p++) {
        uint32_t *dst = out + p * K2 * NR;
        for (int64_t c = 0; c < NR; c++) {
            const int64_t n = source_row(p, c, N, mode);
            const bf16 *row = n < 0 ? NULL : w + n * ldw;
            for (int64_t t = 0; t < K2; t++) {
                uint32_t lo = 0, hi = 0;
                if (row) {
                    lo = row[2 * t];
                    if (2 * t + 1 < K) hi = row[2 * t + 1];
                }
                dst[t * NR + c] = lo | (hi << 16);
            }
        }
    }
    return 0;
}

/* The inner size a pass takes at most (elements, even): past it, plain products run in
 * passes over K, each added into the float32 result (their panels' and rows' share of a
 * pass stays in L2: in one pass over K = 9728, 0.55-0.9x oneDNN; passes of 2048 cost the
 * 0.6B's down product (K = 3072) a few per cent). */
#define KC 4096

typedef struct {
    const bf16 *a;
    int64_t lda, M, N, K;
    const uint32_t *w; /* the pass's first pair of panel 0 */
    int64_t panel_words; /* a whole panel's words (its pairs x NR) */
    const float *bias;
    void *out;
    int64_t ldo;
    int mode;
    int64_t mc, panels, n_parts, m_parts;
} job_t;

/* silu(g) * u */
static inline __m512 swiglu(__m512 g, __m512 u) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g)))), u);
}

/* Rows r0 .. r0 + MR - 1 of a, as pairs, into rows: rows[t][i] = (a[r][2t], a[r][2t+1]),
 * r = r0 + i (the block's last row again past nr rows; an odd K's last pair (a[r][K-1], 0)).
 * Read from rows whose strides are often a power of two (1024-4096 bf16), MR rows in place
 * would share a few L1 sets and evict each other. */
static void pack_rows(const job_t *j, int64_t r0, int64_t nr, uint32_t *rows) {
    const int64_t K2 = (j->K + 1) / 2, whole = j->K / 2;
    for (int i = 0; i < MR; i++) {
        const bf16 *a = j->a + (r0 + (i < nr ? i : nr - 1)) * j->lda;
        const uint32_t *pairs = (const uint32_t *)a;
        for (int64_t t = 0; t < whole; t++) rows[t * MR + i] = pairs[t];
        if (whole < K2) rows[whole * MR + i] = a[j->K - 1];
    }
}

/* Rows r0 .. r0 + nr - 1 (nr <= MR; packed in rows by pack_rows) by panel p, with its
 * epilogue. */
static inline __attribute__((always_inline)) void micro(const job_t *j, const uint32_t *rows,
                                                        int64_t r0, int64_t nr, int64_t p) {
    const int64_t K2 = (j->K + 1) / 2;
    const uint32_t *panel = j->w + p * j->panel_words;
    __m512 acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t t = 0; t < K2; t++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + t * NR);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(panel + t * NR + 16);
        for (int i = 0; i < MR; i++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)rows[t * MR + i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], x, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], x, b1);
        }
    }
    if (j->mode == SWIGLU) {
        const int64_t c0 = p * 16;
        const __mmask16 m = lanes(c0, j->N);
        __m512 bg = _mm512_setzero_ps(), bu = _mm512_setzero_ps();
        if (j->bias) {
            bg = _mm512_maskz_loadu_ps(m, j->bias + c0);
            bu = _mm512_maskz_loadu_ps(m, j->bias + j->N + c0);
        }
        bf16 *out = (bf16 *)j->out + r0 * j->ldo + c0;
        for (int i = 0; i < MR; i++)
            if (i < nr)
                store_bf16_lanes(out + i * j->ldo,
                                 swiglu(_mm512_add_ps(acc[i][0], bg), _mm512_add_ps(acc[i][1], bu)), m);
        return;
    }
    const int64_t c0 = p * NR;
    const __mmask16 m0 = lanes(c0, j->N), m1 = c0 + 16 < j->N ? lanes(c0 + 16, j->N) : 0;
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (j->bias) {
        b0 = _mm512_maskz_loadu_ps(m0, j->bias + c0);
        b1 = _mm512_maskz_loadu_ps(m1, j->bias + c0 + 16);
    }
    float *out = (float *)j->out + r0 * j->ldo + c0;
    for (int i = 0; i < MR; i++) {
        if (i >= nr) break;
        float *o = out + i * j->ldo;
        __m512 y0 = _mm512_add_ps(acc[i][0], b0), y1 = _mm512_add_ps(acc[i][1], b1);
        if (j->mode == ACCUMULATE) {
            y0 = _mm512_add_ps(y0, _mm512_maskz_loadu_ps(m0, o));
            y1 = _mm512_add_ps(y1, _mm512_maskz_loadu_ps(m1, o + 16));
        }
        _mm512_mask_storeu_ps(o, m0, y0);
        _mm512_mask_storeu_ps(o + 16, m1, y1);
    }
}

/* Share w of n parts of 0 .. total - 1, in units of unit (the first shares a unit more). */
static void share(int64_t total, int64_t unit, int64_t w, int64_t n, int64_t *lo, int64_t *hi) {
    const int64_t units = (total + unit - 1) / unit, base = units / n, extra = units % n;
    const int64_t first = w * base + (w < extra ? w : extra);
    const int64_t last = first + base + (w < extra ? 1 : 0);
    *lo = first * unit < total ? first * unit : total;
    *hi = last * unit < total ? last * unit : total;
}

/* Thread w's part: a share of the panels (all of the rows, unless there are fewer panels
 * than threads), by blocks of mc rows, panel by panel (each panel, read from L2, serving the
 * block's rows in turn). Equal shares, not a queue of items: the work is known. */
static int part(const job_t *j, int64_t w) {
    int64_t p_lo, p_hi, r_lo, r_hi;
    share(j->panels, 1, w % j->n_parts, j->n_parts, &p_lo, &p_hi);
    share(j->M, MR, w / j->n_parts, j->m_parts, &r_lo, &r_hi);
    const int64_t K2 = (j->K + 1) / 2, block = K2 * MR;
    uint32_t *rows = aligned_alloc(64, ((size_t)(j->mc / MR * block) * 4 + 63) / 64 * 64);
    if (!rows) return 2;
    for (int64_t r0 = r_lo; r0 < r_hi; r0 += j->mc) {
        const int64_t r1 = r0 + j->mc < r_hi ? r0 + j->mc : r_hi;
        for (int64_t r = r0; r < r1; r += MR)
            pack_rows(j, r, r1 - r < MR ? r1 - r : MR, rows + (r - r0) / MR * block);
        for (int64_t p = p_lo; p < p_hi; p++)
            for (int64_t r = r0; r < r1; r += MR)
                micro(j, rows + (r - r0) / MR * block, r, r1 - r < MR ? r1 - r : MR, p);
    }
    free(rows);
    return 0;
}

/* out = a @ w.T (+ bias), as mode says (see the top of this file). a: (M, K) bf16, rows lda
 * apart; w: packed by qwen3_rerank_pack_bf16 with the same N, K and mode; bias: float32, N
 * values (SWIGLU: gate's N then up's N), or NULL; out: rows ldo apart, float32 (bf16 for
 * SWIGLU). Returns 0, 1 for arguments it does not take, or 2 when out of memory. */
static int pass(const bf16 *a, int64_t lda, const uint32_t *w, int64_t panel_words,
                const float *bias, int64_t M, int64_t N, int64_t K, void *out, int64_t ldo,
                int mode, int threads) {
    job_t j;
    memset(&j, 0, sizeof j);
    j.a = a, j.lda = lda, j.M = M, j.N = N, j.K = K, j.w = w, j.bias = bias, j.out = out;
    j.panel_words = panel_words, j.ldo = ldo, j.mode = mode;
    /* a block of rows: ~1 MiB of a, 96 to 320 rows (a multiple of MR). Each panel serves the
     * block's rows in turn; too few rows a visit and the panels' reads dominate (large K:
     * 0.55x oneDNN at 8 rows of K = 9728), too many and the block leaves L2 (1 MiB on Zen 4).
     * Measured on the 0.6B's, 4B's and 8B's shapes (benchmarks/linear_kernel.py). */
    int64_t mc = (1024 * 1024 / (2 * K)) / MR * MR;
    j.mc = mc < 96 ? 96 : (mc > 320 ? 320 : mc);
    const int64_t per = panel_columns(mode);
    j.panels = (N + per - 1) / per;
    /* the threads split the rows where each gets a block's worth (each row then copied
     * once), else the panels (and the rows too where there are more threads than panels) */
    const int64_t row_blocks = (M + MR - 1) / MR;
    if (M >= threads * j.mc) {
        j.n_parts = 1, j.m_parts = threads;
    } else {
        j.n_parts = threads < j.panels ? threads : j.panels;
        j.m_parts = threads / j.n_parts;
        if (j.m_parts > row_blocks) j.m_parts = row_blocks;
    }
    const int64_t parts = j.n_parts * j.m_parts;
    int failed = 0;
#pragma omp parallel for num_threads((int)parts) schedule(static, 1) reduction(| : failed)
    for (int64_t w = 0; w < parts; w++) failed |= part(&j, w);
    return failed;
}

int qwen3_rerank_linear_bf16(const bf16 *a, int64_t lda, const uint32_t *w, const float *bias,
                             int64_t M, int64_t N, int64_t K, void *out, int64_t ldo, int mode,
                             int threads) {
    if (N < 1 || K < 1 || M < 0 || mode < STORE || mode > SWIGLU || threads < 1) return 1;
    if (M == 0) return 0;
    const int64_t panel_words = (K + 1) / 2 * NR;
    if (mode == SWIGLU || K <= KC) /* the gated product's epilogue needs the whole sums */
        return pass(a, lda, w, panel_words, bias, M, N, K, out, ldo, mode, threads);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k = K - k0 < KC ? K - k0 : KC;
        const int rc = pass(a + k0, lda, w + k0 / 2 * NR, panel_words, k0 == 0 ? bias : NULL, M,
                            N, k, out, ldo, k0 == 0 ? mode : ACCUMULATE, threads);
        if (rc) return rc;
    }
    return 0;
}
