/*
 * kern_gemm_avx2.c - register-blocked gemm kernels for AVX2 + FMA + F16C
 * (layer: tensor). Compiled with -mavx2 -mfma -mf16c (Makefile: the file
 * name contains "_avx2") and installed by kern_avx2_fill through
 * kern_gemm_avx2_fill. Contract: kern_gemm_fn in kern.h; tested against the
 * generic vec_dot in tests/unit/test_kern.c.
 *
 * Same shape as kern_gemm_avx512.c (micro-tiles of MR weight rows x MT
 * tokens, rows outer; edge tiles are the same always_inline code with
 * smaller constant sizes, so a pair's bits never depend on the tile), sized
 * for 16 ymm registers: 2 rows x 4 tokens. Without VNNI the byte products
 * go through vpmaddubsw (pairs to int16) and vpmaddwd with ones (to int32):
 *   Q8_0: |w| (once per row and block) times q with w's sign (per pair);
 *         pair sums stay below 2^15 since |w| <= 128 and |q| <= 127.
 *   Q4_0: nibbles 0..15 unsigned times q, then + (-8 * sum q) (once per
 *         token and block).
 * Per pair and block: acc = fma(float(p) * dy, dw, acc) on 8 lanes, summed
 * in a fixed order at the end (Q4_0: in two chains, see below, with a
 * one-token kernel that runs them interleaved). Q4_K and Q6_K keep the vec_dot-per-output
 * gemm (their unpacked super-block needs 16 registers by itself).
 */
#include <immintrin.h>

#include "tensor/kern.h"
#include "tensor/quant_ref.h"

#define G2_INLINE static inline __attribute__((always_inline))

static inline float g2_fp16(mica_fp16 h) { return _cvtsh_ss(h); }

/* Sum of the 8 lanes in a fixed order. */
static inline float g2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

typedef void (*g2_tile_fn)(int64_t n, const uint8_t *w, uint64_t ws, const uint8_t *a, uint64_t as, float *y,
                           int64_t ldy);

/* Runs the nr x nt tile as micro-tiles of at most 2 x 4 (tab[(R-1)*4 + T-1]);
 * one row at a time when nt == 1 (decode: one sequential weight stream is
 * what the hardware prefetchers follow best). */
static void g2_drive(const g2_tile_fn *tab, int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws,
                     const void *a, uint64_t as, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    const int mr = nt == 1 ? 1 : 2, mt = 4;
    for (int64_t r = 0; r < nr; r += mr) {
        const int rr = (int)(nr - r < mr ? nr - r : mr);
        for (int64_t t = 0; t < nt; t += mt) {
            const int tt = (int)(nt - t < mt ? nt - t : mt);
            tab[(rr - 1) * 4 + (tt - 1)](n, wb + (uint64_t)r * ws, ws, ab + (uint64_t)t * as, as, y + t * ldy + r, ldy);
        }
    }
}

#define G2_INST(fn, R, T)                                                                                     \
    static void fn##_##R##_##T(int64_t n, const uint8_t *w, uint64_t ws, const uint8_t *a, uint64_t as,       \
                               float *y, int64_t ldy) {                                                       \
        fn(n, R, T, w, ws, a, as, y, ldy);                                                                    \
    }
#define G2_INST_ROW(fn, R) G2_INST(fn, R, 1) G2_INST(fn, R, 2) G2_INST(fn, R, 3) G2_INST(fn, R, 4)
#define G2_INST_2X4(fn) G2_INST_ROW(fn, 1) G2_INST_ROW(fn, 2)
#define G2_TAB_ROW(fn, R) fn##_##R##_1, fn##_##R##_2, fn##_##R##_3, fn##_##R##_4
#define G2_TAB_2X4(fn) { G2_TAB_ROW(fn, 1), G2_TAB_ROW(fn, 2) }

/* ---- Q8_0 x Q8_0 ---- */

G2_INLINE void g2_q8_0_tile(int64_t n, const int R, const int T, const uint8_t *w, uint64_t ws, const uint8_t *a,
                            uint64_t as, float *y, int64_t ldy) {
    const int64_t nb = n / QK8_0;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256 dy[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) dy[t] = _mm256_set1_ps(g2_fp16(((const block_q8_0 *)(a + (uint64_t)t * as) + b)->d));
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const block_q8_0 *xb = (const block_q8_0 *)(w + (uint64_t)r * ws) + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256i ax = _mm256_sign_epi8(xv, xv);
            const __m256 dw = _mm256_set1_ps(g2_fp16(xb->d));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const block_q8_0 *yb = (const block_q8_0 *)(a + (uint64_t)t * as) + b;
                const __m256i sy = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)yb->qs), xv);
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), ones);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dy[t]), dw, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = g2_hsum(acc[r][t]);
    }
}

G2_INST_2X4(g2_q8_0_tile)
static const g2_tile_fn g2_q8_0_tab[8] = G2_TAB_2X4(g2_q8_0_tile);

static void g2_gemm_q8_0(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a, uint64_t as,
                         float *y, int64_t ldy) {
    g2_drive(g2_q8_0_tab, n, nr, nt, w, ws, a, as, y, ldy);
}

/* ---- Q4_0 x Q8_0 ---- */

/*
 * Accumulation order (every tile shape and the one-token kernel, so the
 * bits are shared): two chains, chain 0 = blocks [0, h), chain 1 = [h, nb)
 * with h = nb / 2, each acc = fma(float(p) * dy, dw, acc) from 0, blocks in
 * order; result hsum(acc0 + acc1). The one-token kernel interleaves the
 * two chains (two fma chains in flight); tiles run them one after the other.
 */

/* Blocks [b0, b1) of an R x T tile into out (one chain per pair). */
G2_INLINE void g2_q4_0_chain(int64_t b0, int64_t b1, const int R, const int T, const uint8_t *w, uint64_t ws,
                             const uint8_t *a, uint64_t as, __m256 out[2][4]) {
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F), c8 = _mm256_set1_epi8(8);
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = b0; b < b1; b++) {
        __m256i corr[4];
        __m256 dy[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8_0 *yb = (const block_q8_0 *)(a + (uint64_t)t * as) + b;
            const __m256i s8 = _mm256_madd_epi16(_mm256_maddubs_epi16(c8, _mm256_loadu_si256((const __m256i *)yb->qs)), ones);
            corr[t] = _mm256_sub_epi32(_mm256_setzero_si256(), s8);
            dy[t] = _mm256_set1_ps(g2_fp16(yb->d));
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const block_q4_0 *xb = (const block_q4_0 *)(w + (uint64_t)r * ws) + b;
            const __m128i raw = _mm_loadu_si128((const __m128i *)xb->qs);
            const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
            const __m256 dw = _mm256_set1_ps(g2_fp16(xb->d));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const block_q8_0 *yb = (const block_q8_0 *)(a + (uint64_t)t * as) + b;
                const __m256i q = _mm256_loadu_si256((const __m256i *)yb->qs);
                const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(nib, q), ones), corr[t]);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dy[t]), dw, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) out[r][t] = acc[r][t];
    }
}

G2_INLINE void g2_q4_0_tile(int64_t n, const int R, const int T, const uint8_t *w, uint64_t ws, const uint8_t *a,
                            uint64_t as, float *y, int64_t ldy) {
    const int64_t nb = n / QK4_0, h = nb / 2;
    __m256 acc[2][4];
    float p0[2][4][8]; /* chain 0, parked while chain 1 runs */
    g2_q4_0_chain(0, h, R, T, w, ws, a, as, acc);
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) _mm256_storeu_ps(p0[r][t], acc[r][t]);
    }
    g2_q4_0_chain(h, nb, R, T, w, ws, a, as, acc);
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = g2_hsum(_mm256_add_ps(_mm256_loadu_ps(p0[r][t]), acc[r][t]));
    }
}

G2_INST_2X4(g2_q4_0_tile)
static const g2_tile_fn g2_q4_0_tab[8] = G2_TAB_2X4(g2_q4_0_tile);

/* Token-side values of one Q8_0 block for g2_q4_0_row: -8 * sum q per int32
 * lane and dy as a float. */
typedef struct g2_q4_0_act {
    __m256i corr;
    float dy;
} g2_q4_0_act;

/* Rows (in blocks) up to which g2_gemm_q4_0 precomputes the token side on
 * the stack (32 KB); longer rows go through the tile kernel (same bits). */
#define G2_Q4_0_ROW_MAX_BLOCKS 512
/*
 * How far ahead the one-token kernel prefetches weights (bytes, rounded down
 * to whole rows, at least one row). The prefetched rows may lie past the
 * call's nr rows: ops_matmul passes a matrix in blocks of rows, and the
 * next block is where the next call continues (measured: about 8% more
 * decode speed than stopping at the tile's end). A prefetch never faults
 * and reads nothing into the results; the address is formed through
 * uintptr_t and never dereferenced.
 */
#define G2_Q4_0_PF_BYTES 4096u

/* One block of the one-token kernel: returns acc after the block. */
static inline __m256 g2_q4_0_row_block(const block_q4_0 *xb, const block_q8_0 *yb, const g2_q4_0_act *ab,
                                       const uint8_t *pfb, __m256 acc) {
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F), shift = _mm256_set_epi64x(4, 4, 0, 0);
    _mm_prefetch((const char *)pfb, _MM_HINT_T0);
    /* bytes 0..15 = qs & 15, 16..31 = qs >> 4, as in the tile kernel */
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb->qs));
    const __m256i nib = _mm256_and_si256(_mm256_srlv_epi64(raw, shift), m4);
    const __m256i q = _mm256_loadu_si256((const __m256i *)yb->qs);
    const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(nib, q), ones), ab->corr);
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(ab->dy)), _mm256_set1_ps(g2_fp16(xb->d)),
                           acc);
}

/* One weight row (nb blocks at w) times one token (y, act): the two chains
 * interleaved; per block the tile kernel's values, hence its bits.
 * Prefetches pf (a row further on, see G2_Q4_0_PF_BYTES) at the offsets
 * read. */
static float g2_q4_0_row(int64_t nb, const uint8_t *w, const block_q8_0 *y, const g2_q4_0_act *act,
                         const uint8_t *pf) {
    const block_q4_0 *x = (const block_q4_0 *)w;
    const int64_t h = nb / 2;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < h; i++) {
        const int64_t b0 = i, b1 = h + i;
        acc0 = g2_q4_0_row_block(&x[b0], &y[b0], &act[b0], pf + (uint64_t)b0 * sizeof(block_q4_0), acc0);
        acc1 = g2_q4_0_row_block(&x[b1], &y[b1], &act[b1], pf + (uint64_t)b1 * sizeof(block_q4_0), acc1);
    }
    for (int64_t b = 2 * h; b < nb; b++)
        acc1 = g2_q4_0_row_block(&x[b], &y[b], &act[b], pf + (uint64_t)b * sizeof(block_q4_0), acc1);
    return g2_hsum(_mm256_add_ps(acc0, acc1));
}

/* One token with rows of at most G2_Q4_0_ROW_MAX_BLOCKS blocks: the token
 * side once per call, then rows one at a time, prefetching rows ahead;
 * anything else in tiles. */
static void g2_gemm_q4_0(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a, uint64_t as,
                         float *y, int64_t ldy) {
    const int64_t nb = n / QK4_0;
    if (nt == 1 && nb <= G2_Q4_0_ROW_MAX_BLOCKS) {
        g2_q4_0_act act[G2_Q4_0_ROW_MAX_BLOCKS];
        const block_q8_0 *yb = a;
        const __m256i ones = _mm256_set1_epi16(1), c8 = _mm256_set1_epi8(8);
        for (int64_t b = 0; b < nb; b++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)yb[b].qs);
            act[b].corr = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(_mm256_maddubs_epi16(c8, q), ones));
            act[b].dy = g2_fp16(yb[b].d);
        }
        const int64_t pd = ws == 0 || ws >= G2_Q4_0_PF_BYTES ? 1 : (int64_t)(G2_Q4_0_PF_BYTES / ws);
        const uint8_t *wb = w;
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *row = wb + (uint64_t)r * ws;
            y[r] = g2_q4_0_row(nb, row, yb, act, (const uint8_t *)((uintptr_t)row + (uint64_t)pd * ws));
        }
        return;
    }
    g2_drive(g2_q4_0_tab, n, nr, nt, w, ws, a, as, y, ldy);
}

void kern_gemm_avx2_fill(kern_table *t) {
    t->ops[MICA_DTYPE_Q8_0].gemm = g2_gemm_q8_0;
    t->ops[MICA_DTYPE_Q4_0].gemm = g2_gemm_q4_0;
}
