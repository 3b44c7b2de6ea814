/*
 * kern_gemm_avx512.c - register-blocked gemm kernels for AVX-512 F/BW/VL/DQ
 * + VNNI (layer: tensor). Compiled with the AVX-512 flags (Makefile: the
 * file name contains "_avx512") and installed by kern_avx512_fill through
 * kern_gemm_avx512_fill. The contract is kern_gemm_fn's in kern.h; tested
 * against the generic vec_dot in tests/unit/test_kern.c.
 *
 * Q8_0 and Q4_0 (the section "exact block sums, rows in vector lanes"
 * below): weight rows interleaved 16 to a 512-bit register so one vpdpbusd
 * with a broadcast activation word serves 16 rows, exact int32 block sums,
 * one multiply and one FMA per 16 pairs and block; a one-token kernel over
 * the file layout gives the same bits.
 *
 * K-quants (Q4_K, Q6_K): a call's nr x nt outputs are cut into micro-tiles
 * of MR weight rows x MT activation rows (rows outer, so a micro-tile's
 * weight rows stay in L1 while every activation row of the call passes).
 * Inside a micro-tile the loop runs over the K blocks; each block of each
 * weight row is unpacked once and used for all MT tokens, each activation
 * block once for all MR rows. Edge tiles are the same code instantiated
 * with smaller constant MR/MT (always_inline + unrolled loops), so the
 * operations applied to one (row, token) pair - and therefore its bits -
 * never depend on the tile shape, as the contract requires. Registers are
 * 256 bits wide (one 32-element block per register, no cross-lane
 * shuffles). Per pair and super-block the whole sum is formed in int32
 * first (vpmaddubsw + vpdpwssd with the sub-block scales), then
 * acc = fma(float(isum) * dy, d, acc) and, for Q4_K, acc -= (dmin * mins) *
 * (dy * pair sums of bsums); the 8 lanes are summed in a fixed order at the
 * end. Every integer sum is exact; only the float rounding differs from the
 * reference, within the vec_dot bounds (test_kern.c).
 *
 * Preconditions on activations as in kern_avx2.c: quantised by the reference
 * quantisers (q in -127..127, Q8_K bsums equal to the sums of qs).
 *
 * Also here: the Q8_0 activation quantiser (from_float), byte-identical to
 * quant_quantize_row_q8_0 (tested in test_kern.c, rounding ties included).
 */
#include <immintrin.h>
#include <string.h>

#include "mica_internal.h"
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

/* ---- Q8_0 and Q4_0 x Q8_0: exact block sums, rows in vector lanes ---- */

/*
 * Arithmetic per (row, token) pair, shared bit for bit by the two kernels
 * below. With nb blocks of 32 and for block b
 *     isum_b = sum_i w_i * q_i          (exact int32: Q8_0 w in -128..127,
 *                                        Q4_0 w = nibble - 8; q in -127..127)
 *     x_b    = float(isum_b) * dy_b     (exact conversion, one rounding)
 * eight chains c = 0..7, chain c over the blocks b = c, c + 8, c + 16, ...
 * in order, each
 *     acc_c = fma(x_b, dw_b, acc_c)     (from +0)
 * and the output is ((acc_0 + acc_4) + (acc_2 + acc_6)) + ((acc_1 + acc_5) +
 * (acc_3 + acc_7)). Every integer step is exact, so how isum is formed does
 * not matter; the float steps are the same IEEE operations in the same order
 * in both kernels.
 *
 * The prompt kernel (g512_qv_tile, nt >= G512_QV_MIN_TOKENS) first copies
 * 16 weight rows into an interleaved block layout (g512_qv_pack): per
 * block, 512-bit register g holds bytes 4g..4g+3 of each of the 16 rows
 * (lane = row) as unsigned values u (Q8_0: w + 128, i.e. w ^ 0x80; Q4_0:
 * the nibbles, two groups per byte), then the 16 scales as floats. One
 * vpdpbusd of such a register with a token's 4 bytes broadcast adds the
 * products of those 4 elements to all 16 rows at once, so 8 instructions
 * give 16 rows' block sums with no reduction; isum starts from the token's
 * correction c_b = -k * sum q (k = 128 for Q8_0, 8 for Q4_0), which turns
 * sum u * q into sum w * q. Then one multiply and one FMA per 16 pairs and
 * block; the eight chains run one after the other, the final sum is
 * lane-wise. The copy is made once per 16 rows and token chunk of a call and
 * reused by every token of the chunk (its cost is that of reading the rows
 * once). 512-bit registers measured about 1.25x faster than 256-bit ones
 * with 8 rows (Zen 4: half the broadcasts and instructions per product).
 *
 * The one-token kernel (g512_qv_row) reads rows in the file layout, one at
 * a time, 8 blocks per step: their vpdpbusd results (8 int32 lanes each)
 * are reduced to the 8 block sums with a horizontal-add tree, so lane c of
 * one vector FMA is chain c; the final sum is g512_hsum's order. The rows
 * are streamed with software prefetch G512_QV_PF_BYTES ahead (the
 * memory-bound case).
 */

enum g512_qv_kind { G512_QV_Q8_0 = 0, G512_QV_Q4_0 = 1 };

#define G512_QV_MIN_TOKENS 4      /* fewer tokens: the one-token kernel per token */
#define G512_QV_ACT_ENTRIES 32768 /* token x block entries of the token side per chunk */
#define G512_QV_PACK_BYTES 294912 /* interleaved copy of 16 rows (stack): Q8_0 rows up to 16384 */
#define G512_QV_PF_BYTES 4096u

/* Bytes of one packed block of 16 rows: 64-byte quant registers, then 16 float scales. */
static inline int64_t g512_qv_pblk(enum g512_qv_kind kind) { return kind == G512_QV_Q8_0 ? 512 + 64 : 256 + 64; }

/*
 * Token side of a chunk of nt tokens: for token t and block b, entry e =
 * t * nb + b (token-major, the one-token kernel) or b * nt + t (block-major,
 * the prompt kernel): corr[e] = -k * sum q, dy[e] = d. (The quants are
 * read in place: a block-major copy of them measured no faster and limited
 * the chunk.)
 */
static void g512_qv_act(enum g512_qv_kind kind, int64_t nb, int64_t nt, const uint8_t *a, uint64_t as,
                        bool block_major, int32_t *corr, float *dy) {
    const int32_t k = kind == G512_QV_Q8_0 ? 128 : 8;
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    for (int64_t t = 0; t < nt; t++) {
        const block_q8_0 *yb = (const block_q8_0 *)(a + (uint64_t)t * as);
        for (int64_t b = 0; b < nb; b++) {
            const int64_t e = block_major ? b * nt + t : t * nb + b;
            const __m256i q = _mm256_loadu_si256((const __m256i *)yb[b].qs);
            /* sum of (q + 128) as unsigned bytes, minus 32 * 128 */
            const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q, c80), _mm256_setzero_si256());
            const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
            const int64_t su = _mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2)));
            corr[e] = -k * (int32_t)(su - 32 * 128);
            dy[e] = g512_fp16(yb[b].d);
        }
    }
}

/*
 * Copies rows [0, nr) (nr <= 16; missing rows are zero) of nb blocks into
 * the interleaved layout at pk: per block and 8 rows, a 4 x 4 transpose of
 * 32-bit groups within each 128-bit half (rows r and r + 4 share a
 * register, so the lanes come out in row order); rows 0..7 fill the low
 * 32 bytes of each 64-byte register, rows 8..15 the high ones.
 */
static void g512_qv_pack(enum g512_qv_kind kind, int64_t nb, int nr, const uint8_t *w, uint64_t ws, uint8_t *pk) {
    static const uint8_t zero_block[sizeof(block_q8_0)] = {0};
    const int64_t pblk = g512_qv_pblk(kind);
    const uint64_t bsz = kind == G512_QV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    const int halves = kind == G512_QV_Q8_0 ? 2 : 1; /* 16-byte halves of a block's quants */
    const __m256i flip = _mm256_set1_epi8(kind == G512_QV_Q8_0 ? (char)0x80 : 0);
    const uint8_t *base[16];
    uint64_t step[16];
    for (int r = 0; r < 16; r++) {
        base[r] = r < nr ? w + (uint64_t)r * ws : zero_block;
        step[r] = r < nr ? bsz : 0;
    }
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *dst = pk + b * pblk;
        const uint8_t *blk[16];
        uint16_t d[16];
        for (int r = 0; r < 16; r++) {
            blk[r] = base[r] + (uint64_t)b * step[r];
            memcpy(&d[r], blk[r], sizeof d[r]); /* the fp16 d, then the quants at byte 2 */
        }
        for (int r8 = 0; r8 < 16; r8 += 8) {
            for (int hf = 0; hf < halves; hf++) {
                __m256i v[4];
                for (int r = 0; r < 4; r++)
                    v[r] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(blk[r8 + r + 4] + 2 + 16 * hf)),
                                            _mm_loadu_si128((const __m128i *)(blk[r8 + r] + 2 + 16 * hf)));
                const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpacklo_epi32(v[2], v[3]);
                const __m256i t2 = _mm256_unpackhi_epi32(v[0], v[1]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
                uint8_t *o = dst + 256 * hf + 4 * r8; /* register 4 hf + i at 64 (4 hf + i), rows r8.. */
                _mm256_store_si256((__m256i *)(void *)(o + 0), _mm256_xor_si256(_mm256_unpacklo_epi64(t0, t1), flip));
                _mm256_store_si256((__m256i *)(void *)(o + 64), _mm256_xor_si256(_mm256_unpackhi_epi64(t0, t1), flip));
                _mm256_store_si256((__m256i *)(void *)(o + 128), _mm256_xor_si256(_mm256_unpacklo_epi64(t2, t3), flip));
                _mm256_store_si256((__m256i *)(void *)(o + 192), _mm256_xor_si256(_mm256_unpackhi_epi64(t2, t3), flip));
            }
        }
        _mm512_store_ps((float *)(void *)(dst + 256 * halves), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d)));
    }
}

/* Chain c (blocks c, c + 8, ...) of 16 packed rows x T tokens into acc[t]
 * (lanes = rows); the token side block-major over cn tokens, starting at
 * this tile's first token. */
G512_INLINE void g512_qv_chain(enum g512_qv_kind kind, int64_t c, const int T, const uint8_t *pk, const uint8_t *a, uint64_t as,
                               const int32_t *corr, const float *dy, int64_t nb, int64_t cn, __m512 acc[8]) {
    const int64_t pblk = g512_qv_pblk(kind);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = c; b < nb; b += 8) {
        const uint8_t *pb = pk + b * pblk;
        __m512i wv[8], isum[8];
        if (kind == G512_QV_Q8_0) {
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) wv[g] = _mm512_load_si512((const void *)(pb + 64 * g));
        } else {
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m512i raw = _mm512_load_si512((const void *)(pb + 64 * g));
                wv[g] = _mm512_and_si512(raw, m4);                          /* elements 4g..4g+3 */
                wv[g + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4); /* elements 16+4g.. */
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) isum[t] = _mm512_set1_epi32(corr[b * cn + t]);
        /* g outer, tokens inner: T independent dependency chains in flight */
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                int32_t q4;
                memcpy(&q4, ((const block_q8_0 *)(a + (uint64_t)t * as) + b)->qs + 4 * g, 4);
                isum[t] = _mm512_dpbusd_epi32(isum[t], wv[g], _mm512_set1_epi32(q4));
            }
        }
        const __m512 dw = _mm512_load_ps((const float *)(const void *)(pb + (kind == G512_QV_Q8_0 ? 512 : 256)));
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const __m512 x = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(dy[b * cn + t]));
            acc[t] = _mm512_fmadd_ps(x, dw, acc[t]);
        }
    }
}

/* 16 packed rows (nr of them real) x T tokens: outputs y[t * ldy + r]. */
G512_INLINE void g512_qv_tile(enum g512_qv_kind kind, int64_t nb, int64_t cn, const int T, int nr, const uint8_t *pk,
                              const uint8_t *a, uint64_t as, const int32_t *corr, const float *dy, float *y, int64_t ldy) {
    __m512 acc[8], ch[8][8]; /* ch[c][t]: chain c of token t */
#pragma GCC unroll 1
    for (int c = 0; c < 8; c++) {
        g512_qv_chain(kind, c, T, pk, a, as, corr, dy, nb, cn, acc);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) ch[c][t] = acc[t];
    }
    const __mmask16 keep = (__mmask16)((1u << nr) - 1u);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(ch[0][t], ch[4][t]), _mm512_add_ps(ch[2][t], ch[6][t])),
                                       _mm512_add_ps(_mm512_add_ps(ch[1][t], ch[5][t]), _mm512_add_ps(ch[3][t], ch[7][t])));
        _mm512_mask_storeu_ps(y + t * ldy, keep, s);
    }
}

#define G512_QV_TILE_T(name, kind, T)                                                                            \
    static void name##_##T(int64_t nb, int64_t cn, int nr, const uint8_t *pk, const uint8_t *a, uint64_t as,     \
                           const int32_t *corr, const float *dy, float *y, int64_t ldy) {                       \
        g512_qv_tile(kind, nb, cn, T, nr, pk, a, as, corr, dy, y, ldy);                                          \
    }
typedef void (*g512_qv_tile_fn)(int64_t nb, int64_t cn, int nr, const uint8_t *pk, const uint8_t *a, uint64_t as,
                                const int32_t *corr, const float *dy, float *y, int64_t ldy);
#define G512_QV_TILES(name, kind)                                                                                \
    G512_QV_TILE_T(name, kind, 1) G512_QV_TILE_T(name, kind, 2) G512_QV_TILE_T(name, kind, 3)                    \
    G512_QV_TILE_T(name, kind, 4) G512_QV_TILE_T(name, kind, 5) G512_QV_TILE_T(name, kind, 6)                    \
    G512_QV_TILE_T(name, kind, 7) G512_QV_TILE_T(name, kind, 8)                                                  \
    static const g512_qv_tile_fn name##_tab[8] = {name##_1, name##_2, name##_3, name##_4,                        \
                                                  name##_5, name##_6, name##_7, name##_8};
G512_QV_TILES(g512_q8_0_qv, G512_QV_Q8_0)
G512_QV_TILES(g512_q4_0_qv, G512_QV_Q4_0)

/* The 8 int32 sums of p[0..7] (each over its 8 lanes), in order. */
static inline __m256i g512_hsum8_epi32(const __m256i p[8]) {
    const __m256i t0 = _mm256_hadd_epi32(p[0], p[1]), t1 = _mm256_hadd_epi32(p[2], p[3]);
    const __m256i t2 = _mm256_hadd_epi32(p[4], p[5]), t3 = _mm256_hadd_epi32(p[6], p[7]);
    const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
}

/* sum_i u_i * q_i over one block as 8 int32 lanes (u: the unsigned form of
 * the weights as in the packed layout; the correction is added later). */
G512_INLINE __m256i g512_qv_block_dot(enum g512_qv_kind kind, const uint8_t *wb, const int8_t *q) {
    const __m256i qv = _mm256_loadu_si256((const __m256i *)q);
    __m256i u;
    if (kind == G512_QV_Q8_0) {
        u = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)((const block_q8_0 *)wb)->qs),
                             _mm256_set1_epi8((char)0x80));
    } else {
        /* bytes 0..15 = qs & 15, 16..31 = qs >> 4 */
        const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((const block_q4_0 *)wb)->qs));
        u = _mm256_and_si256(_mm256_srlv_epi64(raw, _mm256_set_epi64x(4, 4, 0, 0)), _mm256_set1_epi8(0x0F));
    }
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, qv);
}

/*
 * Blocks [b, b + nk) (nk <= 8) of one row into the 8 chains acc (lane c =
 * chain c, block b + c; b is a multiple of 8): the block sums at once, x
 * for the blocks, their scales, one FMA on the lanes < nk.
 */
G512_INLINE __m256 g512_qv_group(enum g512_qv_kind kind, const uint8_t *w, int64_t b, const int nk,
                                 const block_q8_0 *y, const int32_t *corr, const float *dy, __m256 acc) {
    const int bsz = kind == G512_QV_Q8_0 ? (int)sizeof(block_q8_0) : (int)sizeof(block_q4_0);
    const uint8_t *wb = w + (uint64_t)b * (uint64_t)bsz;
    __m256i p[8];
    __m128i d16 = _mm_setzero_si128();
    /* written out per lane: _mm_insert_epi16 needs a constant lane at every -O */
#define G512_QV_LANE(I)                                                                   \
    if ((I) < nk) {                                                                       \
        p[I] = g512_qv_block_dot(kind, wb + (I) * bsz, y[b + (I)].qs);                    \
        mica_fp16 d_;                                                                     \
        memcpy(&d_, wb + (I) * bsz, sizeof d_);                                           \
        d16 = _mm_insert_epi16(d16, (short)d_, (I));                                      \
    } else {                                                                              \
        p[I] = _mm256_setzero_si256();                                                    \
    }
    G512_QV_LANE(0) G512_QV_LANE(1) G512_QV_LANE(2) G512_QV_LANE(3)
    G512_QV_LANE(4) G512_QV_LANE(5) G512_QV_LANE(6) G512_QV_LANE(7)
#undef G512_QV_LANE
    const __mmask8 m = (__mmask8)((1u << nk) - 1u);
    const __m256i s = _mm256_add_epi32(g512_hsum8_epi32(p), _mm256_maskz_loadu_epi32(m, corr + b));
    const __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_maskz_loadu_ps(m, dy + b));
    return _mm256_mask3_fmadd_ps(x, _mm256_cvtph_ps(d16), acc, m); /* lanes >= nk keep acc */
}

/* One weight row (file layout) times one token: the pair arithmetic above;
 * prefetches pf (a row further on) over the row's length. */
G512_INLINE float g512_qv_row(enum g512_qv_kind kind, int64_t nb, const uint8_t *w, const block_q8_0 *y,
                              const int32_t *corr, const float *dy, const uint8_t *pf) {
    const uint64_t bsz = kind == G512_QV_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (uint64_t o = 0; o < (uint64_t)nb * bsz; o += 64) _mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) acc = g512_qv_group(kind, w, b, 8, y, corr, dy, acc);
    if (b < nb) acc = g512_qv_group(kind, w, b, (int)(nb - b), y, corr, dy, acc);
    return g512_hsum(acc);
}

/*
 * The gemm: tokens in chunks whose token side fits G512_QV_ACT_ENTRIES;
 * per chunk, with at least G512_QV_MIN_TOKENS tokens and rows short enough
 * for the packed copy, 16 rows at a time are packed and run against every
 * token of the chunk 8 tokens at a time; otherwise each token runs the
 * one-token kernel over the rows. Same bits either way (see above).
 * Stack: about 550 KB (token side 256 KB, packed rows 288 KB).
 */
G512_INLINE void g512_qv_gemm(enum g512_qv_kind kind, const g512_qv_tile_fn *tab, int64_t n, int64_t nr, int64_t nt,
                              const void *w, uint64_t ws, const void *a, uint64_t as, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    int32_t corr[G512_QV_ACT_ENTRIES] __attribute__((aligned(32)));
    float dy[G512_QV_ACT_ENTRIES] __attribute__((aligned(32)));
    uint8_t pk[G512_QV_PACK_BYTES] __attribute__((aligned(64)));
    const uint8_t *wb = w, *ab = a;
    const bool packable = nb * g512_qv_pblk(kind) <= G512_QV_PACK_BYTES;
    /* prefetch distance of the one-token kernel, in whole rows (at least 1;
     * rows past nr are only prefetched: ops_matmul continues there) */
    const int64_t pd = ws == 0 || ws >= G512_QV_PF_BYTES ? 1 : (int64_t)(G512_QV_PF_BYTES / ws);
    MICA_ASSERT(nb <= G512_QV_ACT_ENTRIES); /* rows up to 32 * G512_QV_ACT_ENTRIES elements */
    const int64_t chunk = G512_QV_ACT_ENTRIES / nb;
    for (int64_t c0 = 0; c0 < nt; c0 += chunk) {
        const int64_t cn = nt - c0 < chunk ? nt - c0 : chunk;
        const uint8_t *ac = ab + (uint64_t)c0 * as;
        float *yc = y + c0 * ldy;
        if (cn >= G512_QV_MIN_TOKENS && packable) {
            g512_qv_act(kind, nb, cn, ac, as, true, corr, dy);
            for (int64_t r0 = 0; r0 < nr; r0 += 16) {
                const int rn = (int)(nr - r0 < 16 ? nr - r0 : 16);
                g512_qv_pack(kind, nb, rn, wb + (uint64_t)r0 * ws, ws, pk);
                for (int64_t t0 = 0; t0 < cn; t0 += 8) {
                    const int tn = (int)(cn - t0 < 8 ? cn - t0 : 8);
                    tab[tn - 1](nb, cn, rn, pk, ac + (uint64_t)t0 * as, as, corr + t0, dy + t0, yc + t0 * ldy + r0, ldy);
                }
            }
        } else {
            g512_qv_act(kind, nb, cn, ac, as, false, corr, dy);
            for (int64_t t = 0; t < cn; t++) {
                const block_q8_0 *yt = (const block_q8_0 *)(ac + (uint64_t)t * as);
                for (int64_t r = 0; r < nr; r++) {
                    const uint8_t *row = wb + (uint64_t)r * ws;
                    yc[t * ldy + r] = g512_qv_row(kind, nb, row, yt, corr + t * nb, dy + t * nb,
                                                  (const uint8_t *)((uintptr_t)row + (uint64_t)pd * ws));
                }
            }
        }
    }
}

static void g512_gemm_q8_0(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a,
                           uint64_t as, float *y, int64_t ldy) {
    g512_qv_gemm(G512_QV_Q8_0, g512_q8_0_qv_tab, n, nr, nt, w, ws, a, as, y, ldy);
}

static void g512_gemm_q4_0(int64_t n, int64_t nr, int64_t nt, const void *w, uint64_t ws, const void *a,
                           uint64_t as, float *y, int64_t ldy) {
    g512_qv_gemm(G512_QV_Q4_0, g512_q4_0_qv_tab, n, nr, nt, w, ws, a, as, y, ldy);
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
