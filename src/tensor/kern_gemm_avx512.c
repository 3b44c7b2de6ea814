/*
 * kern_gemm_avx512.c - register-blocked gemm kernels for AVX-512 F/BW/VL/DQ
 * + VNNI (layer: tensor). Compiled with the AVX-512 flags (Makefile: the
 * file name contains "_avx512") and installed by kern_avx512_fill through
 * kern_gemm_avx512_fill. The contract is kern_gemm_fn's in kern.h; tested
 * against the generic vec_dot in tests/unit/test_kern.c.
 *
 * Shape. A call's nr x nt outputs are cut into micro-tiles of MR weight rows
 * x MT activation rows (rows outer, so a micro-tile's weight rows stay in L1
 * while every activation row of the call passes). Inside a micro-tile the
 * loop runs over the K blocks; each block of each weight row is unpacked
 * once and used for all MT tokens, each activation block once for all MR
 * rows. Edge tiles are the same code instantiated with smaller constant
 * MR/MT (always_inline + unrolled loops), so the operations applied to one
 * (row, token) pair - and therefore its bits - never depend on the tile
 * shape, as the contract requires.
 *
 * Registers are 256 bits wide (AVX512VL encodings of VNNI, 32 ymm
 * registers): one 32-element block per register needs no cross-lane shuffles,
 * and on the development machine (AMD Zen 4, which splits 512-bit operations
 * in two) it is as fast as 512-bit registers.
 *
 * Arithmetic per pair, per 32-element block (Q8_0, Q4_0):
 *   p = exact int32 lane sums of the block's products (vpdpbusd, with the
 *       unsigned-operand offset removed by starting from a correction term);
 *   acc = fma(float(p) * dy, dw, acc)     (8 lanes)
 * and the 8 lanes are summed in a fixed order at the end. K-quants (Q4_K,
 * Q6_K) sum a whole super-block in int32 first (vpmaddubsw + vpdpwssd with
 * the sub-block scales), then acc = fma(float(isum) * dy, d, acc) and, for
 * Q4_K, acc -= (dmin * mins) * (dy * pair sums of bsums). Every integer sum
 * is exact; only the float rounding differs from the reference, within the
 * vec_dot bounds (test_kern.c).
 *
 * Preconditions on activations as in kern_avx2.c: quantised by the reference
 * quantisers (q in -127..127, Q8_K bsums equal to the sums of qs).
 *
 * Also here: the Q8_0 activation quantiser (from_float), byte-identical to
 * quant_quantize_row_q8_0 (tested in test_kern.c, rounding ties included).
 */
#include <immintrin.h>
#include <string.h>

#include "tensor/kern.h"
#include "tensor/quant_ref.h"

#define G512_INLINE static inline __attribute__((always_inline))

static inline float g512_fp16(mica_fp16 h) { return _cvtsh_ss(h); }

/* Sum of the 8 lanes in a fixed order: (0+4, 1+5, 2+6, 3+7), then pairs. */
static inline float g512_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* A micro-tile kernel: R x T outputs starting at w, a, y (R, T fixed per
 * instance). */
typedef void (*g512_tile_fn)(int64_t n, const uint8_t *w, uint64_t ws, const uint8_t *a, uint64_t as, float *y,
                             int64_t ldy, const uint8_t *pf);

/*
 * Runs the nr x nt tile as micro-tiles of at most mr x mt; tab[(R-1)*mt + T-1]
 * is the R x T instance. With one token (decode) the rows go one at a time:
 * on the development machine, tiles of 2 or 4 interleaved rows streamed from
 * DRAM 1.5-2x slower than one sequential row stream (faster only in cache),
 * and decode is memory-bound. Software prefetch: while the first token group
 * of a row group runs, the tile kernel prefetches the next row group (pf:
 * the same number of rows at the same stride, or NULL).
 */
static void g512_drive(const g512_tile_fn *tab, int mr, int mt, int64_t n, int64_t nr, int64_t nt, const void *w,
                       uint64_t ws, const void *a, uint64_t as, float *y, int64_t ldy) {
    const uint8_t *wb = w, *ab = a;
    const int mt_tab = mt; /* the table's row length, whatever mr is used */
    if (nt == 1) mr = 1;
    for (int64_t r = 0; r < nr; r += mr) {
        const int rr = (int)(nr - r < mr ? nr - r : mr);
        const uint8_t *pf = r + 2 * mr <= nr ? wb + (uint64_t)(r + mr) * ws : NULL;
        for (int64_t t = 0; t < nt; t += mt) {
            const int tt = (int)(nt - t < mt ? nt - t : mt);
            tab[(rr - 1) * mt_tab + (tt - 1)](n, wb + (uint64_t)r * ws, ws, ab + (uint64_t)t * as, as, y + t * ldy + r,
                                          ldy, t == 0 ? pf : NULL);
        }
    }
}

/* Prefetches bytes [off, off + len) of R rows at pf, pf + ws, ... (one
 * prefetch per 64-byte step; len <= 256). */
G512_INLINE void g512_prefetch(const uint8_t *pf, const int R, uint64_t ws, uint64_t off, const int len) {
    if (!pf) return;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int i = 0; i < len; i += 64) _mm_prefetch((const char *)(pf + (uint64_t)r * ws + off + (uint64_t)i), _MM_HINT_T0);
    }
}

/* Instances R x T for R in 1..4, T in 1..4 of tile function `fn`, and the
 * table g512_drive takes. */
#define G512_INST(fn, R, T)                                                                                   \
    static void fn##_##R##_##T(int64_t n, const uint8_t *w, uint64_t ws, const uint8_t *a, uint64_t as,       \
                               float *y, int64_t ldy, const uint8_t *pf) {                                    \
        fn(n, R, T, w, ws, a, as, y, ldy, pf);                                                                \
    }
#define G512_INST_ROW(fn, R) G512_INST(fn, R, 1) G512_INST(fn, R, 2) G512_INST(fn, R, 3) G512_INST(fn, R, 4)
#define G512_INST_4X4(fn) G512_INST_ROW(fn, 1) G512_INST_ROW(fn, 2) G512_INST_ROW(fn, 3) G512_INST_ROW(fn, 4)
#define G512_TAB_ROW(fn, R) fn##_##R##_1, fn##_##R##_2, fn##_##R##_3, fn##_##R##_4
#define G512_TAB_4X4(fn) \
    { G512_TAB_ROW(fn, 1), G512_TAB_ROW(fn, 2), G512_TAB_ROW(fn, 3), G512_TAB_ROW(fn, 4) }

/* ---- Q8_0 x Q8_0 ---- */

/*
 * Activations as unsigned bytes u = q + 128 (xor 0x80), once per token and
 * block; vpdpbusd(u, w) = sum q*w + 128 * sum w, so each pair starts from
 * -128 * sum w (one vpdpbusd per row and block).
 */
G512_INLINE void g512_q8_0_tile(int64_t n, const int R, const int T, const uint8_t *w, uint64_t ws,
                                const uint8_t *a, uint64_t as, float *y, int64_t ldy, const uint8_t *pf) {
    const int64_t nb = n / QK8_0;
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        g512_prefetch(pf, R, ws, (uint64_t)b * sizeof(block_q8_0), (int)1);
        __m256i u[4];
        __m256 dy[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8_0 *yb = (const block_q8_0 *)(a + (uint64_t)t * as) + b;
            u[t] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)yb->qs), c80);
            dy[t] = _mm256_set1_ps(g512_fp16(yb->d));
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q8_0 *xb = (const block_q8_0 *)(w + (uint64_t)r * ws) + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)xb->qs);
            const __m256i corr =
                _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), c80, xv));
            const __m256 dw = _mm256_set1_ps(g512_fp16(xb->d));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const __m256i p = _mm256_dpbusd_epi32(corr, u[t], xv);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dy[t]), dw, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = g512_hsum(acc[r][t]);
    }
}

G512_INST_4X4(g512_q8_0_tile)
static const g512_tile_fn g512_q8_0_tab[16] = G512_TAB_4X4(g512_q8_0_tile);

static void g512_gemm_q8_0(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a,
                           uint64_t as, float *y, int64_t ldy) {
    g512_drive(g512_q8_0_tab, 4, 4, n, nr, nt, w, ws, a, as, y, ldy);
}

/* ---- Q4_0 x Q8_0 ---- */

/* Nibbles of a Q4_0 block as unsigned bytes 0..15 in element order. */
static inline __m256i g512_q4_0_unpack(const uint8_t *qs) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/*
 * sum (nib - 8) * q = vpdpbusd(nib, q) - 8 * sum q: each pair starts from
 * -8 * sum q (one vpdpbusd per token and block), the nibbles are the
 * unsigned operand.
 *
 * Accumulation order (shared by every tile shape and by the one-token
 * kernel, so the bits are): the nb blocks form two chains, chain 0 = blocks
 * [0, h), chain 1 = [h, nb) with h = nb / 2; each chain is
 *   acc = fma(float(p) * dy, dw, acc)    (8 lanes, blocks in order, from 0)
 * and the result is hsum(acc0 + acc1). Two chains let the one-token kernel
 * (g512_q4_0_row) keep two independent fma chains in flight instead of one
 * latency-bound chain; the tile kernel runs them one after the other (four
 * chains measured no faster for one token and slower for tiles).
 */

/* An fp16 scale broadcast to 8 float lanes (exact). */
static inline __m256 g512_fp16_bcast(mica_fp16 h) { return _mm256_cvtph_ps(_mm_set1_epi16((short)h)); }

/* Blocks [b0, b1) of an R x T tile into acc (one chain per pair). */
G512_INLINE void g512_q4_0_chain(int64_t b0, int64_t b1, const int R, const int T, const uint8_t *w, uint64_t ws,
                                 const uint8_t *a, uint64_t as, const uint8_t *pf, __m256 out[4][4]) {
    const __m256i c8 = _mm256_set1_epi8(8);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = b0; b < b1; b++) {
        g512_prefetch(pf, R, ws, (uint64_t)b * sizeof(block_q4_0), (int)1);
        __m256i q[4], corr[4];
        __m256 dy[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8_0 *yb = (const block_q8_0 *)(a + (uint64_t)t * as) + b;
            q[t] = _mm256_loadu_si256((const __m256i *)yb->qs);
            corr[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), c8, q[t]));
            dy[t] = g512_fp16_bcast(yb->d);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q4_0 *xb = (const block_q4_0 *)(w + (uint64_t)r * ws) + b;
            const __m256i nib = g512_q4_0_unpack(xb->qs);
            const __m256 dw = g512_fp16_bcast(xb->d);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const __m256i p = _mm256_dpbusd_epi32(corr[t], nib, q[t]);
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), dy[t]), dw, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) out[r][t] = acc[r][t];
    }
}

G512_INLINE void g512_q4_0_tile(int64_t n, const int R, const int T, const uint8_t *w, uint64_t ws,
                                const uint8_t *a, uint64_t as, float *y, int64_t ldy, const uint8_t *pf) {
    const int64_t nb = n / QK4_0, h = nb / 2;
    /* chain 0 is parked in memory while chain 1 runs, so the block loop
     * keeps only its own accumulators in registers */
    __m256 acc[4][4];
    float p0[4][4][8];
    g512_q4_0_chain(0, h, R, T, w, ws, a, as, pf, acc);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) _mm256_storeu_ps(p0[r][t], acc[r][t]);
    }
    g512_q4_0_chain(h, nb, R, T, w, ws, a, as, pf, acc);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = g512_hsum(_mm256_add_ps(_mm256_loadu_ps(p0[r][t]), acc[r][t]));
    }
}

G512_INST_4X4(g512_q4_0_tile)
static const g512_tile_fn g512_q4_0_tab[16] = G512_TAB_4X4(g512_q4_0_tile);

/* Token-side values of one Q8_0 block for g512_q4_0_row: the start value
 * -8 * sum q of each int32 lane and the scale dy as a float. */
typedef struct g512_q4_0_act {
    __m256i corr;
    float dy;
} g512_q4_0_act;

/* Largest row (in blocks) whose token side g512_gemm_q4_0 precomputes on the
 * stack (32 KB); longer rows go through the tile kernel (same bits). */
#define G512_Q4_0_ROW_MAX_BLOCKS 512
/*
 * How far ahead the one-token kernel prefetches weights (bytes, rounded down
 * to whole rows, at least one row). The prefetched rows may lie past the
 * call's nr rows: ops_matmul passes a matrix in blocks of rows, and the
 * next block is where the next call continues (measured: about 8% more
 * decode speed than stopping at the tile's end). A prefetch never faults
 * and reads nothing into the results; the address is formed through
 * uintptr_t and never dereferenced.
 */
#define G512_Q4_0_PF_BYTES 4096u

/* One block of the one-token kernel: returns acc after the block (pfb: the
 * byte of the next row to prefetch). */
static inline __m256 g512_q4_0_row_block(const block_q4_0 *xb, const block_q8_0 *yb, const g512_q4_0_act *ab,
                                         const uint8_t *pfb, __m256 acc) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), shift = _mm256_set_epi64x(4, 4, 0, 0);
    _mm_prefetch((const char *)pfb, _MM_HINT_T0);
    /* bytes 0..15 = qs & 15, 16..31 = qs >> 4 (as g512_q4_0_unpack) */
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb->qs));
    const __m256i nib = _mm256_and_si256(_mm256_srlv_epi64(raw, shift), m4);
    const __m256i p = _mm256_dpbusd_epi32(ab->corr, nib, _mm256_loadu_si256((const __m256i *)yb->qs));
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(ab->dy)), g512_fp16_bcast(xb->d), acc);
}

/*
 * One weight row (nb blocks at w) times one token (y, with its precomputed
 * act): the two chains of the order above interleaved, block i of each
 * chain per iteration, so two independent fma chains are in flight. Per
 * block the same values as the tile kernel (same nibbles, same exact p, the
 * same float(p) * dy then fma with dw), hence the same bits. Prefetches the
 * bytes of pf (a row further on, see G512_Q4_0_PF_BYTES) at the offsets it
 * reads from w.
 */
static float g512_q4_0_row(int64_t nb, const uint8_t *w, const block_q8_0 *y, const g512_q4_0_act *act,
                           const uint8_t *pf) {
    const block_q4_0 *x = (const block_q4_0 *)w;
    const int64_t h = nb / 2;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < h; i++) {
        const int64_t b0 = i, b1 = h + i;
        acc0 = g512_q4_0_row_block(&x[b0], &y[b0], &act[b0], pf + (uint64_t)b0 * sizeof(block_q4_0), acc0);
        acc1 = g512_q4_0_row_block(&x[b1], &y[b1], &act[b1], pf + (uint64_t)b1 * sizeof(block_q4_0), acc1);
    }
    for (int64_t b = 2 * h; b < nb; b++)
        acc1 = g512_q4_0_row_block(&x[b], &y[b], &act[b], pf + (uint64_t)b * sizeof(block_q4_0), acc1);
    return g512_hsum(_mm256_add_ps(acc0, acc1));
}

/* One token with rows of at most G512_Q4_0_ROW_MAX_BLOCKS blocks: the token
 * side once per call, then rows one at a time (see g512_drive), prefetching
 * rows ahead; anything else through the tile kernels. */
static void g512_gemm_q4_0(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a,
                           uint64_t as, float *y, int64_t ldy) {
    const int64_t nb = n / QK4_0;
    if (nt == 1 && nb <= G512_Q4_0_ROW_MAX_BLOCKS) {
        g512_q4_0_act act[G512_Q4_0_ROW_MAX_BLOCKS];
        const block_q8_0 *yb = a;
        const __m256i c8 = _mm256_set1_epi8(8);
        for (int64_t b = 0; b < nb; b++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)yb[b].qs);
            act[b].corr = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), c8, q));
            act[b].dy = g512_fp16(yb[b].d);
        }
        /* prefetch distance: about 4 KB ahead, in whole rows (measured
         * faster from DRAM than the next row; the hardware prefetcher is not
         * enough for one core to approach the memory bandwidth) */
        const int64_t pd = ws == 0 || ws >= G512_Q4_0_PF_BYTES ? 1 : (int64_t)(G512_Q4_0_PF_BYTES / ws);
        const uint8_t *wb = w;
        for (int64_t r = 0; r < nr; r++) {
            const uint8_t *row = wb + (uint64_t)r * ws;
            y[r] = g512_q4_0_row(nb, row, yb, act, (const uint8_t *)((uintptr_t)row + (uint64_t)pd * ws));
        }
        return;
    }
    g512_drive(g512_q4_0_tab, 4, 4, n, nr, nt, w, ws, a, as, y, ldy);
}

/* ---- K-quants x Q8_K ---- */

/* Token-side values of one Q8_K block, shared by all rows of a micro-tile. */
typedef struct g512_q8k_side {
    __m256 dy;  /* y.d broadcast */
    __m256 dbs; /* y.d * (bsums[2j] + bsums[2j+1]), j = 0..7 (Q4_K mins) */
} g512_q8k_side;

static inline void g512_q8k_side_get(const block_q8_k *yb, bool want_pairs, g512_q8k_side *s) {
    s->dy = _mm256_set1_ps(yb->d);
    if (want_pairs) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)yb->bsums);
        const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        s->dbs = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(pairs)), s->dy);
    } else {
        s->dbs = _mm256_setzero_ps();
    }
}

/* The 8 scales and 8 mins of a Q4_K block as int16 (FORMATS 2.3 unpacking
 * four bytes at a time; x86 is little-endian). */
static inline void g512_q4_k_scales(const uint8_t *q, __m128i *sc, __m128i *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    uint32_t s_lo = u0 & 0x3F3F3F3Fu, m_lo = u1 & 0x3F3F3F3Fu;
    uint32_t s_hi = (u2 & 0x0F0F0F0Fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u);
    __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)s_hi, (int)s_lo);
    *sc = _mm_cvtepu8_epi16(v);
    *mn = _mm_cvtepu8_epi16(_mm_srli_si128(v, 8));
}

/*
 * Q4_K: per row and super-block the 8 sub-blocks' nibbles (unsigned bytes)
 * and their scales broadcast as int16 words; per pair
 *   isum = sum_j vpdpwssd(vpmaddubsw(nib_j, q_j), sc_j)        (exact)
 *   acc  = fma(float(isum) * dy, d, acc) - (dmin * mn) * (dy * bsum pairs)
 * Accumulators live in a small array (R*T of them may not all fit in
 * registers next to the 16 unpacked vectors).
 */
G512_INLINE void g512_q4_k_tile(int64_t n, const int R, const int T, const uint8_t *w, uint64_t ws,
                                const uint8_t *a, uint64_t as, float *y, int64_t ldy, const uint8_t *pf) {
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        g512_prefetch(pf, R, ws, (uint64_t)b * sizeof(block_q4_k), (int)sizeof(block_q4_k));
        g512_q8k_side side[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) g512_q8k_side_get((const block_q8_k *)(a + (uint64_t)t * as) + b, true, &side[t]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q4_k *xb = (const block_q4_k *)(w + (uint64_t)r * ws) + b;
            __m128i sc, mn;
            g512_q4_k_scales(xb->scales, &sc, &mn);
            const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
            __m256i nib[8], scv[8];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)(xb->qs + 32 * c));
                nib[2 * c] = _mm256_and_si256(raw, m4);
                nib[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
            }
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) scv[j] = _mm256_shuffle_epi8(sc2, _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j))));
            const __m256 dv = _mm256_set1_ps(g512_fp16(xb->d));
            const __m256 fm = _mm256_mul_ps(_mm256_set1_ps(g512_fp16(xb->dmin)), _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(mn)));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const int8_t *q8 = ((const block_q8_k *)(a + (uint64_t)t * as) + b)->qs;
                __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    const __m256i p = _mm256_maddubs_epi16(nib[j], _mm256_loadu_si256((const __m256i *)(q8 + 32 * j)));
                    isum = _mm256_dpwssd_epi32(isum, p, scv[j]);
                }
                __m256 v = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), side[t].dy), dv, acc[r][t]);
                acc[r][t] = _mm256_fnmadd_ps(fm, side[t].dbs, v);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = g512_hsum(acc[r][t]);
    }
}

G512_INST_4X4(g512_q4_k_tile)
static const g512_tile_fn g512_q4_k_tab[16] = G512_TAB_4X4(g512_q4_k_tile);

static void g512_gemm_q4_k(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a,
                           uint64_t as, float *y, int64_t ldy) {
    g512_drive(g512_q4_k_tab, 4, 4, n, nr, nt, w, ws, a, as, y, ldy);
}

/*
 * Q6_K: per row and super-block the 8 groups of 32 as unsigned u = q + 32
 * (low nibble from ql, two high bits from qh) and, per group, its two
 * scales as int16 words (low 128-bit half: first 16 elements, high half:
 * next 16). Per pair isum starts at -32 * sum_j sc_j * bsums[j] (vpmaddwd
 * with the scales times -32, exact in int16), then
 * isum += vpdpwssd(vpmaddubsw(u_g, q_g), sc_g); acc = fma(float(isum) * dy, d, acc).
 */
G512_INLINE void g512_q6_k_tile(int64_t n, const int R, const int T, const uint8_t *w, uint64_t ws,
                                const uint8_t *a, uint64_t as, float *y, int64_t ldy, const uint8_t *pf) {
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2h = _mm256_set1_epi8(0x30);
    /* bytes 0,1 repeated in the low 128-bit half, bytes 2,3 in the high half */
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        g512_prefetch(pf, R, ws, (uint64_t)b * sizeof(block_q6_k), (int)sizeof(block_q6_k));
        __m256 dy[4];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) dy[t] = _mm256_set1_ps(((const block_q8_k *)(a + (uint64_t)t * as) + b)->d);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q6_k *xb = (const block_q6_k *)(w + (uint64_t)r * ws) + b;
            const __m128i sc8 = _mm_loadu_si128((const __m128i *)xb->scales);
            const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
            const __m256i nsc32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
            __m256i u[8], scv[8];
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(xb->ql + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(xb->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(xb->qh + 32 * h));
                u[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2h));
                u[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2h));
                u[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m2h));
                u[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2h));
            }
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                /* scale 2g in the low half, 2g+1 in the high half: dword g of sc16
                 * holds the pair, spread by a byte shuffle */
                scv[g] = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(g)), pick);
            }
            const __m256 dv = _mm256_set1_ps(g512_fp16(xb->d));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const block_q8_k *yb = (const block_q8_k *)(a + (uint64_t)t * as) + b;
                __m256i isum = _mm256_madd_epi16(nsc32, _mm256_loadu_si256((const __m256i *)yb->bsums));
#pragma GCC unroll 8
                for (int g = 0; g < 8; g++) {
                    const __m256i p = _mm256_maddubs_epi16(u[g], _mm256_loadu_si256((const __m256i *)(yb->qs + 32 * g)));
                    isum = _mm256_dpwssd_epi32(isum, p, scv[g]);
                }
                acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), dy[t]), dv, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = g512_hsum(acc[r][t]);
    }
}

G512_INST_4X4(g512_q6_k_tile)
static const g512_tile_fn g512_q6_k_tab[16] = G512_TAB_4X4(g512_q6_k_tile);

static void g512_gemm_q6_k(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a,
                           uint64_t as, float *y, int64_t ldy) {
    g512_drive(g512_q6_k_tab, 4, 4, n, nr, nt, w, ws, a, as, y, ldy);
}

/* ---- Q8_0 activation quantiser ---- */

/*
 * Bit-identical to quant_quantize_row_q8_0 (FORMATS 2.4): amax is exact in
 * any order; d = amax / 127 and id = 1 / d are the same scalar operations;
 * x * id is the same product, and roundf's half-away-from-zero rounding is
 * done exactly as t = trunc(v), t += sign(v) if |v - t| >= 0.5 (v - t is
 * exact). |v| <= 127 (plus rounding) so the int8 narrowing never saturates
 * differently from the reference's cast; d goes through the reference
 * binary16 conversion.
 */
static void g512_q8_0_from_float(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, absmask), _mm512_and_ps(v1, absmask)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_fp16(d);
        const __m512 idv = _mm512_set1_ps(id);
        __m512i q[2];
        for (int h = 0; h < 2; h++) {
            const __m512 v = _mm512_mul_ps(h ? v1 : v0, idv);
            const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m512 frac = _mm512_and_ps(_mm512_sub_ps(v, t), absmask);
            const __mmask16 up = _mm512_cmp_ps_mask(frac, half, _CMP_GE_OQ);
            /* t + copysign(1, v) where |v - t| >= 0.5 */
            const __m512 step = _mm512_or_ps(one, _mm512_andnot_ps(absmask, v));
            q[h] = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
        }
        _mm_storeu_si128((__m128i *)y[b].qs, _mm512_cvtsepi32_epi8(q[0]));
        _mm_storeu_si128((__m128i *)(y[b].qs + 16), _mm512_cvtsepi32_epi8(q[1]));
    }
}

void kern_gemm_avx512_fill(kern_table *t) {
    t->ops[MICA_DTYPE_Q8_0].from_float = g512_q8_0_from_float;
    t->ops[MICA_DTYPE_Q8_0].gemm = g512_gemm_q8_0;
    t->ops[MICA_DTYPE_Q4_0].gemm = g512_gemm_q4_0;
    t->ops[MICA_DTYPE_Q4_K].gemm = g512_gemm_q4_k;
    t->ops[MICA_DTYPE_Q6_K].gemm = g512_gemm_q6_k;
}
