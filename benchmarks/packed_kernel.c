/* The packed kernel alone (src/cyrnn_packed.h): one step's recurrent product
 * of an LSTM-shaped pass (gates x n_a rows, k = n_a) on m columns, float32,
 * as the engine runs it (columns packed per block, panels, the sums added onto
 * G whose rows are ldg apart), best of 5 timings; GFLOP/s to compare with a
 * large SGEMM through the same machine's OpenBLAS.
 *
 *   gcc -O3 -fno-trapping-math -Isrc benchmarks/packed_kernel.c -o /tmp/packed_kernel -lm
 *   /tmp/packed_kernel N_A GATES M [LEVEL (0 sse2, 1 avx2, 2 avx512; -1 best)] [LDG]
 */
#include "cyrnn_packed.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s N_A GATES M [LEVEL] [LDG]\n", argv[0]);
        return 2;
    }
    const int n_a = atoi(argv[1]), gates = atoi(argv[2]), m = atoi(argv[3]), k = n_a;
    cyrnn_packed_use_level(argc > 4 ? atoi(argv[4]) : -1);
    /* rows padded apart by default (the engine's scratch_ld: no 4-KiB aliasing) */
    const int ldg = argc > 5 ? atoi(argv[5]) : m + 16;
    float *W = malloc(sizeof(float) * gates * n_a * k), *B = malloc(sizeof(float) * k * m);
    float *G = calloc((size_t)gates * n_a * ldg, sizeof(float));
    for (long i = 0; i < (long)gates * n_a * k; i++) W[i] = (rand() % 1000) / 1000.0f - 0.5f;
    for (long i = 0; i < (long)k * m; i++) B[i] = (rand() % 1000) / 1000.0f - 0.5f;
    const ptrdiff_t L = cyrnn_packed_lanes_f(), U = L * (gates <= 2 ? 4 / gates : 1);
    const float *rows[4];
    ptrdiff_t ld[4];
    for (int g = 0; g < gates; g++) { rows[g] = W + (long)g * n_a * k; ld[g] = k; }
    const ptrdiff_t panels = (n_a + U - 1) / U;
    float *P = aligned_alloc(64, ((sizeof(float) * panels * k * gates * U + 63) / 64) * 64);
    float *Bp = aligned_alloc(64, ((sizeof(float) * k * m + 63) / 64) * 64);
    cyrnn_pack_f(rows, ld, gates, n_a, k, U, P);
    int cols = 16384 / (gates * U * 4);
    if (cols < 8) cols = 8;
    int reps = (int)(2e9 / (2.0 * gates * n_a * k * m));
    if (reps < 3) reps = 3;
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double t = now();
        for (int it = 0; it < reps; it++)
            for (int j0 = 0; j0 < m; j0 += cols) {
                const int nc = m - j0 < cols ? m - j0 : cols;
                cyrnn_pack_columns_f(gates, U, B + j0, m, k, nc, Bp);
                for (ptrdiff_t p = 0; p < panels; p++) {
                    const ptrdiff_t units = n_a - p * U < U ? n_a - p * U : U;
                    cyrnn_panel_product_f(P + p * k * gates * U, k, gates, U, Bp, nc,
                                          G + p * U * ldg + j0, ldg, (ptrdiff_t)n_a * ldg, units);
                }
            }
        t = (now() - t) / reps;
        if (t < best) best = t;
    }
    printf("%s n_a=%d gates=%d m=%d ldg=%d: %.1f us per step, %.1f GFLOP/s\n",
           cyrnn_packed_isa(), n_a, gates, m, ldg, best * 1e6,
           2.0 * gates * n_a * k * m / best / 1e9);
    free(W); free(B); free(G); free(P); free(Bp);
    return 0;
}
