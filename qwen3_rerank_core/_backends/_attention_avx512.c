/* Causal attention in bfloat16 for CPUs with AVX-512 BF16 (qwen3_rerank_core).
 *
 * Built at run time by _cpu_attention.py (cc -O3 -mavx512f -mavx512bw -mavx512vl
 * -mavx512bf16 -fopenmp -shared) and called through ctypes; see that module for when it is used.
 *
 * For each batch row b and query head h (GQA: key/value head h / (H / KV)), query row r
 * at absolute position pos(r) = P + (last ? last[b] : r) attends to keys 0 .. pos(r): the
 * P prefix keys (shared by every batch row), then the row's own keys. Scores and the
 * softmax are float32; the products take bf16 inputs and accumulate in float32
 * (VDPBF16PS); the softmax weights are rounded to bf16 for the product with the values
 * and the output is normalised in float32, then rounded to bf16 -- the same roundings
 * as torch's CPU flash-attention kernel in bf16.
 *
 * Layout: keys are packed per (b, kv head) as pairs of head dimensions, Kp[t][j][2] =
 * K[j][2t .. 2t+1], so that one 64-byte load holds 16 keys' pair t; values as pairs of
 * keys, Vp[jp][c][2] = (V[2jp][c], V[2jp+1][c]). A work item is ROWS query rows of one
 * (b, h); the threads of an OpenMP team take items in turn. Any even head size d: where
 * d is not a multiple of 16, the last vector of values and outputs is masked.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "_avx512_common.h"

/* Query rows a work item: each key and value vector loaded serves ROWS rows (8: 5-25 %
 * faster than 4 on the shapes of benchmarks/attention_kernel.py, AMD EPYC Zen 4). */
#define ROWS 8

typedef struct {
    const bf16 *q;
    int64_t q_sb, q_sh, q_sr;
    const bf16 *pk, *pv; /* prefix keys/values: (KV, P, d), or NULL when P == 0 */
    int64_t pk_sh, pk_sr, pv_sh, pv_sr, P;
    const bf16 *k, *v;
    int64_t k_sb, k_sh, k_sr, v_sb, v_sh, v_sr;
    bf16 *out; /* (B, rows, H, d) contiguous */
    int64_t B, H, KV, rows, T, d;
    float scale;
    const int64_t *last; /* NULL, or one position per batch row (then rows == 1) */
    /* Ragged rows (or NULL): batch row b's own tokens are start[b] .. start[b] + len[b] - 1
     * of the packed token axis of k and v (their batch strides unused) and, with ragged_q,
     * of q and out too (then q's and out's rows of b are its len[b] tokens). */
    const int64_t *start, *len;
    int ragged_q;
    int64_t N, N2;       /* keys (P + T), rounded up to 16 */
    uint32_t *kp;        /* (B, KV, d/2, N2) bf16 pairs */
    uint32_t *vp;        /* (B, KV, N2/2, d) bf16 pairs */
    int64_t n_items, row_blocks;
    int failed;
} job_t;

/* Keys batch row b sees at most: the prefix and its own tokens. */
static inline int64_t keys_of(const job_t *j, int64_t b) {
    return j->P + (j->len ? j->len[b] : j->T);
}

/* Query rows of batch row b. */
static inline int64_t rows_of(const job_t *j, int64_t b) {
    return j->ragged_q ? j->len[b] : j->rows;
}

static inline const bf16 *key_at(const job_t *j, int64_t b, int64_t g, int64_t n) {
    if (n < j->P) return j->pk + g * j->pk_sh + n * j->pk_sr;
    if (j->start) return j->k + g * j->k_sh + (j->start[b] + n - j->P) * j->k_sr;
    return j->k + b * j->k_sb + g * j->k_sh + (n - j->P) * j->k_sr;
}

static inline const bf16 *value_at(const job_t *j, int64_t b, int64_t g, int64_t n) {
    if (n < j->P) return j->pv + g * j->pv_sh + n * j->pv_sr;
    if (j->start) return j->v + g * j->v_sh + (j->start[b] + n - j->P) * j->v_sr;
    return j->v + b * j->v_sb + g * j->v_sh + (n - j->P) * j->v_sr;
}

/* Query row r of batch row b, head h; and where its output goes. */
static inline const bf16 *query_at(const job_t *j, int64_t b, int64_t h, int64_t r) {
    if (j->ragged_q) return j->q + h * j->q_sh + (j->start[b] + r) * j->q_sr;
    return j->q + b * j->q_sb + h * j->q_sh + r * j->q_sr;
}

static inline bf16 *out_at(const job_t *j, int64_t b, int64_t h, int64_t r) {
    const int64_t row = j->ragged_q ? j->start[b] + r : b * j->rows + r;
    return j->out + (row * j->H + h) * j->d;
}

static void pack(job_t *j, int64_t b, int64_t g) {
    const int64_t d = j->d, half = d / 2, N = keys_of(j, b), N2 = j->N2;
    uint32_t *kp = j->kp + (b * j->KV + g) * half * N2;
    uint32_t *vp = j->vp + (b * j->KV + g) * (N2 / 2) * d;
    for (int64_t n = 0; n < N2; n++) {
        if (n < N) {
            const uint32_t *src = (const uint32_t *)key_at(j, b, g, n);
            for (int64_t t = 0; t < half; t++) kp[t * N2 + n] = src[t];
        } else {
            for (int64_t t = 0; t < half; t++) kp[t * N2 + n] = 0;
        }
    }
    for (int64_t jp = 0; jp < N2 / 2; jp++) {
        uint32_t *dst = vp + jp * d;
        int64_t n0 = 2 * jp, n1 = 2 * jp + 1;
        const bf16 *a = n0 < N ? value_at(j, b, g, n0) : NULL;
        const bf16 *c = n1 < N ? value_at(j, b, g, n1) : NULL;
        for (int64_t e = 0; e < d; e++) {
            uint32_t lo = a ? a[e] : 0, hi = c ? c[e] : 0;
            dst[e] = lo | (hi << 16);
        }
    }
}

/* Scores of ROWS query rows against NB (1 or 2) blocks of 16 packed keys from kcol, scaled,
 * into o (row i at o + i * N2). Inlined with a constant NB, the loops over it unroll. */
static inline __attribute__((always_inline)) void score_blocks(const uint32_t *kcol,
                                                               const uint32_t *const *qrow,
                                                               int64_t half, int64_t N2,
                                                               __m512 scale, float *o,
                                                               const int NB) {
    __m512 acc[2][ROWS];
    for (int x = 0; x < NB; x++)
        for (int i = 0; i < ROWS; i++) acc[x][i] = _mm512_setzero_ps();
    for (int64_t t = 0; t < half; t++) {
        __m512bh keys[2];
        for (int x = 0; x < NB; x++)
            keys[x] = (__m512bh)_mm512_loadu_si512(kcol + t * N2 + 16 * x);
        for (int i = 0; i < ROWS; i++) {
            __m512bh qi = (__m512bh)_mm512_set1_epi32((int)qrow[i][t]);
            for (int x = 0; x < NB; x++) acc[x][i] = _mm512_dpbf16_ps(acc[x][i], qi, keys[x]);
        }
    }
    for (int x = 0; x < NB; x++)
        for (int i = 0; i < ROWS; i++)
            _mm512_storeu_ps(o + i * N2 + 16 * x, _mm512_mul_ps(acc[x][i], scale));
}

/* Head dimensions c0 .. c0 + 16 * NV - 1 of ROWS rows' outputs, of the last vector only
 * the lanes in tail: their bf16 softmax weights p (row i at p + i * N2, pairs keys long)
 * times the packed values vp, each row scaled by inv[i], into out (row i at out + i *
 * row_stride + c0; nr rows written). Inlined with a constant NV (1 or 2 vectors), the loops
 * over it unroll. */
static inline __attribute__((always_inline)) void weigh_values(const uint32_t *vp, const bf16 *p,
                                                               int64_t N2, int64_t pairs, int64_t d,
                                                               int64_t c0, int64_t nr,
                                                               const float *inv, bf16 *out,
                                                               int64_t row_stride, const int NV,
                                                               __mmask16 tail) {
    __m512 acc[ROWS][2];
    for (int64_t i = 0; i < ROWS; i++)
        for (int x = 0; x < NV; x++) acc[i][x] = _mm512_setzero_ps();
    for (int64_t jp = 0; jp < pairs; jp++) {
        const uint32_t *vrow = vp + jp * d + c0;
        __m512bh v[2];
        for (int x = 0; x < NV; x++)
            v[x] = (__m512bh)_mm512_maskz_loadu_epi32(x == NV - 1 ? tail : 0xFFFF, vrow + 16 * x);
        for (int64_t i = 0; i < ROWS; i++) {
            __m512bh w = (__m512bh)_mm512_set1_epi32(((const int32_t *)(p + i * N2))[jp]);
            for (int x = 0; x < NV; x++) acc[i][x] = _mm512_dpbf16_ps(acc[i][x], w, v[x]);
        }
    }
    for (int64_t i = 0; i < nr; i++) {
        bf16 *o = out + i * row_stride + c0;
        __m512 sc = _mm512_set1_ps(inv[i]);
        for (int x = 0; x < NV; x++)
            store_bf16_lanes(o + 16 * x, _mm512_mul_ps(acc[i][x], sc), x == NV - 1 ? tail : 0xFFFF);
    }
}

/* One work item: query rows r0 .. r0+nr-1 of (b, h). s: ROWS x N2 floats, p: ROWS x N2 bf16. */
static void item(job_t *j, int64_t b, int64_t h, int64_t r0, int64_t nr, float *s, bf16 *p) {
    const int64_t d = j->d, half = d / 2, N2 = j->N2, G = j->H / j->KV, g = h / G;
    const uint32_t *kp = j->kp + (b * j->KV + g) * half * N2;
    const uint32_t *vp = j->vp + (b * j->KV + g) * (N2 / 2) * d;
    const int64_t keys = keys_of(j, b);
    int64_t seen[ROWS];
    const uint32_t *qrow[ROWS];
    int64_t most = 0;
    for (int64_t i = 0; i < ROWS; i++) {
        int64_t r = r0 + (i < nr ? i : 0);
        int64_t pos = j->P + (j->last ? j->last[b] : r);
        seen[i] = i < nr ? pos + 1 : 0;
        if (seen[i] > keys) seen[i] = keys; /* never past its keys */
        if (seen[i] < 0) seen[i] = 0;
        if (seen[i] > most) most = seen[i];
        qrow[i] = (const uint32_t *)query_at(j, b, h, r);
    }
    /* row r0's output; the next rows' follow, H * d apart (in either layout). Worked out
     * once: per-row pointers kept live through the loops below cost ~20 % of the kernel. */
    bf16 *const out = out_at(j, b, h, r0);
    const int64_t blocks = (most + 15) / 16;
    const __m512 scale = _mm512_set1_ps(j->scale);
    /* scores: two blocks of 16 keys at a time (2 x ROWS independent accumulators hide the
     * latency of VDPBF16PS), then the odd block */
    int64_t kb = 0;
    for (; kb + 1 < blocks; kb += 2) score_blocks(kp + kb * 16, qrow, half, N2, scale, s + kb * 16, 2);
    if (kb < blocks) score_blocks(kp + kb * 16, qrow, half, N2, scale, s + kb * 16, 1);
    /* softmax weights, unnormalised, as bf16 (keys past a row's own position: 0) */
    float inv[ROWS];
    const int64_t span = blocks * 16;
    for (int64_t i = 0; i < ROWS; i++) {
        float *si = s + i * N2;
        bf16 *pi = p + i * N2;
        int64_t n = seen[i];
        if (n == 0) {
            memset(pi, 0, (size_t)span * sizeof(bf16));
            inv[i] = 0.0f;
            continue;
        }
        for (int64_t e = n; e < span; e++) si[e] = -INFINITY;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t e = 0; e < span; e += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(si + e));
        __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t e = 0; e < span; e += 16) {
            __m512 x = exp512(_mm512_sub_ps(_mm512_loadu_ps(si + e), m));
            sum = _mm512_add_ps(sum, x);
            store_bf16(pi + e, x);
        }
        inv[i] = 1.0f / _mm512_reduce_add_ps(sum);
    }
    /* weights x values, 32 head dimensions (two vectors) at a time, then the last 2-30
     * where d is not a multiple of 32 (the last vector's lanes masked where d % 16 != 0) */
    const int64_t pairs = span / 2, stride = j->H * d;
    int64_t c0 = 0;
    for (; c0 + 32 <= d; c0 += 32) weigh_values(vp, p, N2, pairs, d, c0, nr, inv, out, stride, 2, 0xFFFF);
    if (d - c0 > 16) weigh_values(vp, p, N2, pairs, d, c0, nr, inv, out, stride, 2, lanes(c0 + 16, d));
    else if (c0 < d) weigh_values(vp, p, N2, pairs, d, c0, nr, inv, out, stride, 1, lanes(c0, d));
}

/* Both phases on the OpenMP team of the calling thread: linked against the libgomp that
 * torch has loaded (the same soname), so its worker threads, not new ones, run them. */
static void run(job_t *j, int threads) {
    const int64_t packs = j->B * j->KV;
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < packs; w++) pack(j, w / j->KV, w % j->KV);
        float *s = aligned_alloc(64, (size_t)(ROWS * j->N2 * sizeof(float) + 64) / 64 * 64);
        bf16 *p = aligned_alloc(64, (size_t)(ROWS * j->N2 * sizeof(bf16) + 64) / 64 * 64);
        if (!s || !p) {
            j->failed = 1;
        }
        /* the most expensive items (the last row blocks) first */
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < j->n_items; w++) {
            if (!s || !p) continue;
            int64_t blk = j->row_blocks - 1 - w / (j->B * j->H);
            int64_t bh = w % (j->B * j->H), b = bh / j->H;
            int64_t r0 = blk * ROWS, rows = rows_of(j, b);
            if (r0 >= rows) continue; /* past a ragged row's end */
            int64_t nr = rows - r0 < ROWS ? rows - r0 : ROWS;
            item(j, b, bh % j->H, r0, nr, s, p);
        }
        free(s);
        free(p);
    }
}

/* Returns 0 on success. Strides are in elements; the head dimension is contiguous. With
 * start and len (ragged rows, see job_t), T and rows are the longest row's length. */
int qwen3_rerank_attention_bf16(const bf16 *q, int64_t q_sb, int64_t q_sh, int64_t q_sr,
                                const bf16 *pk, int64_t pk_sh, int64_t pk_sr, const bf16 *pv,
                                int64_t pv_sh, int64_t pv_sr, int64_t P, const bf16 *k,
                                int64_t k_sb, int64_t k_sh, int64_t k_sr, const bf16 *v,
                                int64_t v_sb, int64_t v_sh, int64_t v_sr, bf16 *out, int64_t B,
                                int64_t H, int64_t KV, int64_t rows, int64_t T, int64_t d,
                                float scale, const int64_t *last, const int64_t *start,
                                const int64_t *len, int ragged_q, int threads) {
    if (d < 2 || d % 2 != 0 || H % KV != 0 || threads < 1) return 1;
    if ((start == NULL) != (len == NULL) || (ragged_q && !start)) return 1;
    job_t j;
    memset(&j, 0, sizeof j);
    j.q = q, j.q_sb = q_sb, j.q_sh = q_sh, j.q_sr = q_sr;
    j.pk = pk, j.pk_sh = pk_sh, j.pk_sr = pk_sr, j.P = P;
    j.pv = pv, j.pv_sh = pv_sh, j.pv_sr = pv_sr;
    j.k = k, j.k_sb = k_sb, j.k_sh = k_sh, j.k_sr = k_sr;
    j.v = v, j.v_sb = v_sb, j.v_sh = v_sh, j.v_sr = v_sr;
    j.out = out, j.B = B, j.H = H, j.KV = KV, j.rows = rows, j.T = T, j.d = d;
    j.scale = scale, j.last = last, j.start = start, j.len = len, j.ragged_q = ragged_q;
    j.N = P + T;
    j.N2 = (j.N + 15) / 16 * 16;
    j.row_blocks = (rows + ROWS - 1) / ROWS;
    j.n_items = j.row_blocks * B * H;
    size_t kbytes = (size_t)(B * KV * (d / 2) * j.N2) * 4, vbytes = (size_t)(B * KV * (j.N2 / 2) * d) * 4;
    j.kp = aligned_alloc(64, (kbytes + 63) / 64 * 64);
    j.vp = aligned_alloc(64, (vbytes + 63) / 64 * 64);
    if (!j.kp || !j.vp) {
        free(j.kp);
        free(j.vp);
        return 2;
    }
    if (threads > j.n_items) threads = (int)(j.n_items > 0 ? j.n_items : 1);
    run(&j, threads);
    free(j.kp);
    free(j.vp);
    return j.failed ? 2 : 0;
}
