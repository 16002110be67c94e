/* The bf16 product rate this CPU's cores can reach at most: independent VDPBF16PS on 512-bit
 * registers (64 floating-point operations each), on 1 and 2 threads; the ceiling against
 * which benchmarks/linear_kernel.py's and oneDNN's rates are read. Build and run:
 *
 *     cc -O2 -mavx512f -mavx512bf16 -fopenmp benchmarks/peak_bf16.c -o /tmp/peak_bf16
 *     /tmp/peak_bf16
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#define CHAINS 16 /* independent accumulators: more than latency x throughput */

int main(void) {
    const long iters = 50000000;
    for (int threads = 1; threads <= 2; threads++) {
        double best = 0;
        for (int rep = 0; rep < 3; rep++) {
            const double start = omp_get_wtime();
            float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
            {
                __m512 acc[CHAINS];
                for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_setzero_ps();
                const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80);
                const __m512bh y = (__m512bh)_mm512_set1_epi32(0x00010001);
                for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
                    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
                }
                for (int i = 0; i < CHAINS; i++) sink += _mm512_reduce_add_ps(acc[i]);
            }
            const double rate = (double)threads * iters * CHAINS * 64 / (omp_get_wtime() - start) / 1e9;
            if (rate > best) best = rate;
            if (sink == 1.234f) printf(" ");
        }
        printf("%d thread(s): %.0f GFLOP/s (VDPBF16PS, 512-bit)\n", threads, best);
    }
    return 0;
}
