/* Causal attention in float32 for x86-64 CPUs with AVX2 and FMA (qwen3_rerank_core).
 *
 * Built at run time by _cpu_attention.py (cc -O3 -mavx2 -mfma -fopenmp -shared) and called
 * through ctypes; see that module for when it is used.
 *
 * The float32 counterpart of _attention_avx512.c, with the same job: for each batch row b
 * and query head h (GQA: key/value head h / (H / KV)), query row r at absolute position
 * pos(r) = P + (last ? last[b] : r) attends to keys 0 .. pos(r): the P prefix keys (shared
 * by every batch row, read in place), then the row's own keys (padded rows, or ragged ones
 * packed one after another). Everything is float32: scores (fused multiply-adds over the
 * head dimension, in order), softmax (exp as in the AVX-512 kernel, ~2e-7 relative) and the
 * weighted sum of the values, normalised at the end.
 *
 * Layout: keys and values are packed per (b, kv head), prefix and own ones alike, in
 * panels that the loops below read front to back: keys in blocks of 16, Kp[blk][t][16] =
 * K[16 blk + lane][t] (one 64-byte line holds 16 keys' dimension t); values in chunks of
 * 16 head dimensions, Vp[chunk][n][16] = V[n][16 chunk + lane] (zero past d). Read in
 * place, a head's keys or values lie KV * d floats apart, a multiple of 4 KiB on common
 * shapes: every row in one set of the L1 cache. A work item is ROWS query rows of one
 * (b, h), scored against 16 keys at a time (ROWS x 2 accumulators) and weighing 16 head
 * dimensions of the values at a time (ROWS x 2 accumulators): register tiles of a 6 x 16
 * matrix product, as BLAS kernels for AVX2 use. The threads of an OpenMP team take items
 * in turn. Any head size: where d is not a multiple of 16, the last chunk's outputs are
 * stored masked.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Query rows a work item: 6 rows x 2 vectors = 12 accumulators, with the two key (or
 * value) vectors and one broadcast, 15 of the 16 vector registers. */
#define ROWS 6

typedef struct {
    const float *q;
    int64_t q_sb, q_sh, q_sr;
    const float *pk, *pv; /* prefix keys/values: (KV, P, d), or NULL when P == 0 */
    int64_t pk_sh, pk_sr, pv_sh, pv_sr, P;
    const float *k, *v;
    int64_t k_sb, k_sh, k_sr, v_sb, v_sh, v_sr;
    float *out; /* (B, rows, H, d) contiguous */
    int64_t B, H, KV, rows, T, d;
    float scale;
    const int64_t *last; /* NULL, or one position per batch row (then rows == 1) */
    /* Ragged rows (or NULL): batch row b's own tokens are start[b] .. start[b] + len[b] - 1
     * of the packed token axis of k and v (their batch strides unused) and, with ragged_q,
     * of q and out too (then q's and out's rows of b are its len[b] tokens). */
    const int64_t *start, *len;
    int ragged_q;
    int64_t N, N2, D16; /* keys (P + T), rounded up to 16; d rounded up to 16 */
    float *kp;          /* (B, KV, N2 / 16, d, 16) */
    float *vp;          /* (B, KV, D16 / 16, N2, 16) */
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

static inline const float *key_at(const job_t *j, int64_t b, int64_t g, int64_t n) {
    if (n < j->P) return j->pk + g * j->pk_sh + n * j->pk_sr;
    if (j->start) return j->k + g * j->k_sh + (j->start[b] + n - j->P) * j->k_sr;
    return j->k + b * j->k_sb + g * j->k_sh + (n - j->P) * j->k_sr;
}

static inline const float *value_at(const job_t *j, int64_t b, int64_t g, int64_t n) {
    if (n < j->P) return j->pv + g * j->pv_sh + n * j->pv_sr;
    if (j->start) return j->v + g * j->v_sh + (j->start[b] + n - j->P) * j->v_sr;
    return j->v + b * j->v_sb + g * j->v_sh + (n - j->P) * j->v_sr;
}

/* Query row r of batch row b, head h; and where its output goes. */
static inline const float *query_at(const job_t *j, int64_t b, int64_t h, int64_t r) {
    if (j->ragged_q) return j->q + h * j->q_sh + (j->start[b] + r) * j->q_sr;
    return j->q + b * j->q_sb + h * j->q_sh + r * j->q_sr;
}

static inline float *out_at(const job_t *j, int64_t b, int64_t h, int64_t r) {
    const int64_t row = j->ragged_q ? j->start[b] + r : b * j->rows + r;
    return j->out + (row * j->H + h) * j->d;
}

static void pack(job_t *j, int64_t b, int64_t g) {
    const int64_t d = j->d, N = keys_of(j, b), N2 = j->N2, D16 = j->D16;
    float *kp = j->kp + (b * j->KV + g) * d * N2;
    float *vp = j->vp + (b * j->KV + g) * D16 * N2;
    for (int64_t n = 0; n < N2; n++) {
        float *kdst = kp + (n / 16) * d * 16 + n % 16;
        float *vdst = vp + n * 16;
        if (n < N) {
            const float *ksrc = key_at(j, b, g, n), *vsrc = value_at(j, b, g, n);
            for (int64_t t = 0; t < d; t++) kdst[t * 16] = ksrc[t];
            for (int64_t c = 0; c < D16; c++) vdst[(c / 16) * N2 * 16 + c % 16] = c < d ? vsrc[c] : 0.0f;
        } else {
            for (int64_t t = 0; t < d; t++) kdst[t * 16] = 0.0f;
            for (int64_t c = 0; c < D16; c++) vdst[(c / 16) * N2 * 16 + c % 16] = 0.0f;
        }
    }
}

/* The lanes of a vector at c of a row n long (all 8, or the row's last n - c), as the
 * mask of _mm256_maskload_ps / _mm256_maskstore_ps. */
static inline __m256i lanes8(int64_t c, int64_t n) {
    const int64_t left = n - c >= 8 ? 8 : n - c; /* none where c >= n */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hmax8(__m256 x) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float hsum8(__m256 x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x), float32 (Cephes' expf polynomial, relative error ~2e-7); 0 below -87 (-inf: a
 * key the row does not see); x is at most 0 here (scores minus their row's maximum). */
static inline __m256 exp256(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(n, ln2_hi, x);
    f = _mm256_fnmadd_ps(n, ln2_lo, f);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.0000001201e-1f));
    __m256 f2 = _mm256_mul_ps(f, f);
    p = _mm256_fmadd_ps(p, f2, _mm256_add_ps(f, _mm256_set1_ps(1.0f)));
    /* 2^n: n in [-126, 127] after the clamps, a normal float's exponent */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), live);
}

/* Scores of ROWS query rows against the block of 16 packed keys kblk, scaled, into o (row
 * i at o + i * N2). */
static inline void score_block(const float *kblk, const float *const *qrow, int64_t d,
                               int64_t N2, __m256 scale, float *o) {
    __m256 acc[2][ROWS];
    for (int x = 0; x < 2; x++)
        for (int i = 0; i < ROWS; i++) acc[x][i] = _mm256_setzero_ps();
    for (int64_t t = 0; t < d; t++) {
        const __m256 k0 = _mm256_loadu_ps(kblk + t * 16), k1 = _mm256_loadu_ps(kblk + t * 16 + 8);
        for (int i = 0; i < ROWS; i++) {
            const __m256 qi = _mm256_broadcast_ss(qrow[i] + t);
            acc[0][i] = _mm256_fmadd_ps(qi, k0, acc[0][i]);
            acc[1][i] = _mm256_fmadd_ps(qi, k1, acc[1][i]);
        }
    }
    for (int i = 0; i < ROWS; i++)
        for (int x = 0; x < 2; x++) _mm256_storeu_ps(o + i * N2 + 8 * x, _mm256_mul_ps(acc[x][i], scale));
}

/* Head dimensions c0 .. c0 + 15 of ROWS rows' outputs (of the last chunk only the lanes
 * in tail, two masks of 8): the softmax weights p (row i at p + i * N2) of the keys 0 ..
 * most - 1 times the chunk's packed values vchunk, each row scaled by inv[i], into out
 * (row i at out + i * row_stride + c0; nr rows written). */
static inline void weigh_values(const float *vchunk, const float *p, int64_t N2, int64_t most,
                                int64_t c0, int64_t nr, const float *inv, float *out,
                                int64_t row_stride, __m256i tail0, __m256i tail1) {
    __m256 acc[ROWS][2];
    for (int i = 0; i < ROWS; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int64_t n = 0; n < most; n++) {
        const __m256 v0 = _mm256_loadu_ps(vchunk + n * 16), v1 = _mm256_loadu_ps(vchunk + n * 16 + 8);
        for (int i = 0; i < ROWS; i++) {
            const __m256 w = _mm256_broadcast_ss(p + i * N2 + n);
            acc[i][0] = _mm256_fmadd_ps(w, v0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(w, v1, acc[i][1]);
        }
    }
    /* every index a constant once unrolled: the accumulators stay in registers */
    for (int i = 0; i < ROWS; i++) {
        if (i >= nr) break;
        float *o = out + i * row_stride + c0;
        const __m256 sc = _mm256_set1_ps(inv[i]);
        _mm256_maskstore_ps(o, tail0, _mm256_mul_ps(acc[i][0], sc));
        _mm256_maskstore_ps(o + 8, tail1, _mm256_mul_ps(acc[i][1], sc));
    }
}

/* One work item: query rows r0 .. r0+nr-1 of (b, h). s: ROWS x N2 floats (scores, then
 * the unnormalised softmax weights in place). */
static void item(job_t *j, int64_t b, int64_t h, int64_t r0, int64_t nr, float *s) {
    const int64_t d = j->d, N2 = j->N2, G = j->H / j->KV, g = h / G;
    const float *kp = j->kp + (b * j->KV + g) * d * N2;
    const float *vp = j->vp + (b * j->KV + g) * j->D16 * N2;
    const int64_t keys = keys_of(j, b);
    int64_t seen[ROWS];
    const float *qrow[ROWS];
    int64_t most = 0;
    for (int64_t i = 0; i < ROWS; i++) {
        int64_t r = r0 + (i < nr ? i : 0);
        int64_t pos = j->P + (j->last ? j->last[b] : r);
        seen[i] = i < nr ? pos + 1 : 0;
        if (seen[i] > keys) seen[i] = keys; /* never past its keys */
        if (seen[i] < 0) seen[i] = 0;
        if (seen[i] > most) most = seen[i];
        qrow[i] = query_at(j, b, h, r);
    }
    float *const out = out_at(j, b, h, r0); /* the next rows' follow, H * d apart */
    const int64_t span = (most + 15) / 16 * 16;
    const __m256 scale = _mm256_set1_ps(j->scale);
    for (int64_t kb = 0; kb < span; kb += 16) score_block(kp + kb * d, qrow, d, N2, scale, s + kb);
    /* softmax weights, unnormalised, in place (keys past a row's own position: 0) */
    float inv[ROWS];
    for (int64_t i = 0; i < ROWS; i++) {
        float *si = s + i * N2;
        const int64_t n = seen[i];
        if (n == 0) {
            memset(si, 0, (size_t)span * sizeof(float));
            inv[i] = 0.0f;
            continue;
        }
        for (int64_t e = n; e < span; e++) si[e] = -INFINITY;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int64_t e = 0; e < span; e += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(si + e));
        const __m256 m = _mm256_set1_ps(hmax8(mx));
        __m256 sum = _mm256_setzero_ps();
        for (int64_t e = 0; e < span; e += 8) {
            const __m256 x = exp256(_mm256_sub_ps(_mm256_loadu_ps(si + e), m));
            sum = _mm256_add_ps(sum, x);
            _mm256_storeu_ps(si + e, x);
        }
        inv[i] = 1.0f / hsum8(sum);
    }
    /* weights x values, 16 head dimensions (two vectors) at a time */
    for (int64_t c0 = 0; c0 < d; c0 += 16)
        weigh_values(vp + c0 * N2, s, N2, most, c0, nr, inv, out, j->H * d, lanes8(c0, d),
                     lanes8(c0 + 8, d));
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
        if (!s) {
            j->failed = 1;
        }
        /* the most expensive items (the last row blocks) first */
#pragma omp for schedule(dynamic, 1)
        for (int64_t w = 0; w < j->n_items; w++) {
            if (!s) continue;
            int64_t blk = j->row_blocks - 1 - w / (j->B * j->H);
            int64_t bh = w % (j->B * j->H), b = bh / j->H;
            int64_t r0 = blk * ROWS, rows = rows_of(j, b);
            if (r0 >= rows) continue; /* past a ragged row's end */
            int64_t nr = rows - r0 < ROWS ? rows - r0 : ROWS;
            item(j, b, bh % j->H, r0, nr, s);
        }
        free(s);
    }
}

/* Returns 0 on success. Strides are in elements; the head dimension is contiguous. With
 * start and len (ragged rows, see job_t), T and rows are the longest row's length. */
int qwen3_rerank_attention_f32(const float *q, int64_t q_sb, int64_t q_sh, int64_t q_sr,
                               const float *pk, int64_t pk_sh, int64_t pk_sr, const float *pv,
                               int64_t pv_sh, int64_t pv_sr, int64_t P, const float *k,
                               int64_t k_sb, int64_t k_sh, int64_t k_sr, const float *v,
                               int64_t v_sb, int64_t v_sh, int64_t v_sr, float *out, int64_t B,
                               int64_t H, int64_t KV, int64_t rows, int64_t T, int64_t d,
                               float scale, const int64_t *last, const int64_t *start,
                               const int64_t *len, int ragged_q, int threads) {
    if (d < 1 || H % KV != 0 || threads < 1) return 1;
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
    j.D16 = (d + 15) / 16 * 16;
    j.row_blocks = (rows + ROWS - 1) / ROWS;
    j.n_items = j.row_blocks * B * H;
    size_t kbytes = (size_t)(B * KV * d * j.N2) * sizeof(float);
    size_t vbytes = (size_t)(B * KV * j.D16 * j.N2) * sizeof(float);
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
