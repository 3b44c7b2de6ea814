/*
 * quant_ref.c - scalar reference conversions, dequantisation and
 * quantisation (layer: tensor). Contracts in quant_ref.h; formulas from
 * FORMATS.md 2.2-2.4.
 */
#include "tensor/quant_ref.h"

#include <math.h>
#include <string.h>

#include "mica_internal.h"

/* ---- scalar conversions ---- */

static uint32_t qr_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float qr_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float quant_fp16_to_f32(mica_fp16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in binary32 */
        float v = (float)man * 0x1p-24f;
        return qr_bits_f32(qr_f32_bits(v) | sign);
    }
    if (exp == 31) {
        uint32_t bits = sign | 0x7F800000u | (man << 13);
        if (man != 0) bits |= 0x00400000u; /* NaN: quiet */
        return qr_bits_f32(bits);
    }
    return qr_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Shifts v right by s (1..31) rounding to nearest, ties to even. */
static uint32_t qr_shift_rne(uint32_t v, unsigned s) {
    uint32_t q = v >> s;
    uint32_t rem = v & ((1u << s) - 1u);
    uint32_t half = 1u << (s - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return q;
}

mica_fp16 quant_f32_to_fp16(float f) {
    uint32_t u = qr_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (mica_fp16)(sign | 0x7E00u); /* NaN */
    uint32_t e = u >> 23;
    uint32_t man = u & 0x7FFFFFu;
    if (e >= 143) return (mica_fp16)(sign | 0x7C00u); /* >= 2^16, or infinity */
    if (e >= 113) {
        /* normal half: exponent e-112; a mantissa carry moves into the
         * exponent field, up to 0x7C00 (infinity) for values >= 65520 */
        uint32_t bits = ((e - 112u) << 10) + qr_shift_rne(man, 13);
        return (mica_fp16)(sign | bits);
    }
    if (e < 102) return sign; /* < 2^-25: rounds to zero (2^-25 exactly needs e = 102) */
    /* subnormal half: value = (man | 2^23) * 2^(e-150), unit 2^-24 */
    uint32_t full = man | 0x800000u;
    return (mica_fp16)(sign | qr_shift_rne(full, 126u - e));
}

float quant_bf16_to_f32(mica_bf16 h) { return qr_bits_f32((uint32_t)h << 16); }

mica_bf16 quant_f32_to_bf16(float f) {
    uint32_t u = qr_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (mica_bf16)((u >> 16) | 0x40u);
    return (mica_bf16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Round half to even for abs(f) <= 4194303: adding 1.5*2^23 leaves the
 * rounded value in the low mantissa bits (no libm call, no rounding-mode
 * dependence beyond the default round-to-nearest of float addition). */
static inline int qr_nearest(float f) {
    float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007FFFFF) - 0x00400000;
}

int quant_nearest_int(float f) { return qr_nearest(f); }

/* Round half to even of f clamped to [lo, hi] (|lo|, |hi| small): safe for
 * any finite f, unlike qr_nearest alone. */
static inline int qr_round_clamp(float f, int lo, int hi) {
    if (!(f > (float)lo)) return lo; /* also catches NaN */
    if (f > (float)hi) return hi;
    return qr_nearest(f);
}

void quant_fp16_to_f32_row(const mica_fp16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = quant_fp16_to_f32(x[i]);
}

void quant_f32_to_fp16_row(const float *x, mica_fp16 *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = quant_f32_to_fp16(x[i]);
}

void quant_bf16_to_f32_row(const mica_bf16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = quant_bf16_to_f32(x[i]);
}

void quant_f32_to_bf16_row(const float *x, mica_bf16 *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = quant_f32_to_bf16(x[i]);
}

/* ---- dequantisation ---- */

void quant_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK4_0 == 0);
    for (int64_t b = 0; b < n / QK4_0; b++, y += QK4_0) {
        float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[b].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void quant_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK8_0 == 0);
    for (int64_t b = 0; b < n / QK8_0; b++, y += QK8_0) {
        float d = quant_fp16_to_f32(x[b].d);
        for (int j = 0; j < QK8_0; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

void quant_q4_k_get_scale_min(const uint8_t *q, int j, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *mn = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Inverse of quant_q4_k_get_scale_min for all 8 sub-blocks (values 0..63). */
static void qr_q4_k_pack_scales(const uint8_t sc[8], const uint8_t mn[8], uint8_t q[12]) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
}

void quant_dequantize_row_q4_k(const block_q4_k *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = quant_fp16_to_f32(x[b].d);
        float dmin = quant_fp16_to_f32(x[b].dmin);
        const uint8_t *qs = x[b].qs;
        for (int c = 0; c < QK_K / 64; c++, qs += 32) {
            uint8_t sc, mn;
            quant_q4_k_get_scale_min(x[b].scales, 2 * c, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            quant_q4_k_get_scale_min(x[b].scales, 2 * c + 1, &sc, &mn);
            float d2 = d * (float)sc, m2 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(qs[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(qs[l] >> 4) - m2;
        }
    }
}

void quant_dequantize_row_q6_k(const block_q6_k *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++) {
        float d = quant_fp16_to_f32(x[b].d);
        for (int i = 0; i < QK_K; i++) {
            int h = i / 128, r = i % 128, g = r / 32, l = r % 32;
            uint8_t lb = x[b].ql[64 * h + l + (g & 1) * 32];
            int low4 = g < 2 ? (lb & 0x0F) : (lb >> 4);
            int high2 = (x[b].qh[32 * h + l] >> (2 * g)) & 3;
            int q = (low4 | (high2 << 4)) - 32;
            y[i] = d * (float)x[b].scales[i / 16] * (float)q;
        }
        y += QK_K;
    }
}

void quant_dequantize_row_q8_k(const block_q8_k *x, float *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, y += QK_K) {
        for (int j = 0; j < QK_K; j++) y[j] = x[b].d * (float)x[b].qs[j];
    }
}

/* ---- activation quantisers ---- */

void quant_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK8_0 == 0);
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) {
            float ax = fabsf(x[j]);
            amax = ax > amax ? ax : amax;
        }
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = quant_f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void quant_quantize_row_q8_k(const float *x, block_q8_k *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        memset(y[b].bsums, 0, sizeof y[b].bsums);
        if (amax == 0.0f) {
            y[b].d = 0.0f;
            memset(y[b].qs, 0, sizeof y[b].qs);
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = qr_nearest(iscale * x[j]);
            y[b].qs[j] = (int8_t)MICA_MIN(127, v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += y[b].qs[16 * j + i];
            y[b].bsums[j] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ---- weight quantisers ---- */

/*
 * Scale-search sizes (candidates per (sub-)block and their spacing), chosen
 * by measuring the round-trip error on Gaussian data against the cost
 * (relative RMSE Q4_0 8.13%, Q4_K 7.15%, Q6_K 1.72%): twice as many
 * candidates gain less than 0.03% absolute.
 */
#define QR_Q4_0_TRIES 3
#define QR_Q4_0_STEP  0.08f
#define QR_Q6_K_TRIES 2
#define QR_Q6_K_STEP  0.08f
#define QR_Q4_K_TRIES 3
#define QR_Q4_K_STEP  0.3f

/*
 * Candidate evaluation for the weight quantisers. Each candidate scale maps
 * the values onto integer levels (qr_nearest, then an integer clamp: the
 * same result as qr_round_clamp for |v| <= 4194303, which every candidate
 * satisfies since it maps the largest magnitude near the level range; the
 * integer form keeps the loops free of branches so they vectorise). The
 * sums over eight lanes are independent (no reassociation), so the results
 * do not depend on the compiler's vector width.
 */
enum { QR_LANES = 8 };

static float qr_round_levels(float v, int lo, int hi) {
    int q = qr_nearest(v);
    q = q > lo ? q : lo;
    q = q < hi ? q : hi;
    return (float)q;
}

static float qr_lane_sum(const float a[QR_LANES]) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* For q = levels(iscale * x): *sxq = sum(x q), *sqq = sum(q q); m % 8 == 0. */
static void qr_sums_symmetric(const float *x, int m, float iscale, int lo, int hi,
                              float *sxq, float *sqq) {
    float a[QR_LANES] = {0}, b[QR_LANES] = {0};
    for (int i = 0; i < m; i += QR_LANES) {
        for (int l = 0; l < QR_LANES; l++) {
            float q = qr_round_levels(iscale * x[i + l], lo, hi);
            a[l] += x[i + l] * q;
            b[l] += q * q;
        }
    }
    *sxq = qr_lane_sum(a);
    *sqq = qr_lane_sum(b);
}

/* For q = levels(iscale * u) on 0..hi: *sq = sum(q), *sqq = sum(q q),
 * *sxq = sum(x q); m % 8 == 0. The level sums are exact small integers. */
static void qr_sums_affine(const float *x, const float *u, int m, float iscale, int hi, float *sq,
                           float *sqq, float *sxq) {
    float a[QR_LANES] = {0}, b[QR_LANES] = {0}, c[QR_LANES] = {0};
    for (int i = 0; i < m; i += QR_LANES) {
        for (int l = 0; l < QR_LANES; l++) {
            float q = qr_round_levels(iscale * u[i + l], 0, hi);
            a[l] += q;
            b[l] += q * q;
            c[l] += x[i + l] * q;
        }
    }
    *sq = qr_lane_sum(a);
    *sqq = qr_lane_sum(b);
    *sxq = qr_lane_sum(c);
}

/*
 * Symmetric fit of m values (m % 8 == 0) onto integer levels qmin..qmax
 * with one scale s (value = s*q). Candidates map the largest-magnitude
 * element onto qmin*(1 + step*t) for t = -1..ntry (from slightly inside the
 * level range to outside it, i.e. clipping the extremes) and onto qmax. Each
 * candidate rounds onto the levels and takes the least-squares scale for
 * those levels, s = sum(x q)/sum(q q), whose squared error is
 * sum(x x) - sum(x q)^2/sum(q q) (closed form, no second pass); rounding
 * again with s can only lower it. Returns the s of the smallest such error
 * (0 for an all-zero input).
 */
static float qr_fit_symmetric(const float *x, int m, int qmin, int qmax, int ntry, float step) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < m; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    const float lo = (float)qmin, hi = (float)qmax, imax = 1.0f / max;
    /* The error reduction to maximise is sum(x q)^2 / sum(q q); compared by
     * cross-multiplying (in double: no overflow) to keep divisions out of
     * the loop. */
    float best_sxq = 0.0f, best_sqq = 0.0f;
    for (int t = -1; t <= ntry + 1; t++) {
        float target = t <= ntry ? lo * (1.0f + step * (float)t) : hi;
        float sxq, sqq;
        qr_sums_symmetric(x, m, target * imax, qmin, qmax, &sxq, &sqq);
        if (!(sqq > 0.0f)) continue;
        if (best_sqq == 0.0f ||
            (double)sxq * sxq * best_sqq > (double)best_sxq * best_sxq * sqq) {
            best_sxq = sxq;
            best_sqq = sqq;
        }
    }
    return best_sqq > 0.0f ? best_sxq / best_sqq : max / lo;
}

/*
 * Q4_0: per block of 32, the scale d from qr_fit_symmetric over levels
 * -8..7, rounded to fp16; then q = clamp(round(x/d), -8, 7) + 8 with that
 * stored d.
 */
void quant_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK4_0 == 0);
    for (int64_t b = 0; b < n / QK4_0; b++, x += QK4_0) {
        float s = qr_fit_symmetric(x, QK4_0, -8, 7, QR_Q4_0_TRIES, QR_Q4_0_STEP);
        y[b].d = quant_f32_to_fp16(s);
        float d = quant_fp16_to_f32(y[b].d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[QK4_0];
        for (int j = 0; j < QK4_0; j++) {
            q[j] = (uint8_t)(qr_round_clamp(x[j] * id, -8, 7) + 8);
        }
        for (int j = 0; j < QK4_0 / 2; j++) y[b].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

/*
 * Asymmetric fit of 32 values as s*q - m with q in 0..15, s >= 0, m >= 0
 * (the Q4_K sub-block model: the offset can only be negative or zero).
 * Starts from the range [min(x,0), max(x)]; candidates stretch the level
 * count 15 by QR_Q4_K_STEP * (-QR_Q4_K_TRIES..QR_Q4_K_TRIES); each rounds
 * the levels, then refits (s, -m) by least squares on the 2x2 normal
 * equations (with m clamped to 0 and s refitted if the fit wants a positive
 * offset). The squared error of a least-squares fit is known in closed form
 * (sum(x x) minus the fitted values' projection), so no second pass over
 * the values is needed. Keeps the pair with the smallest squared error for
 * its levels; rounding again with it can only lower that error.
 */
static void qr_fit_affine(const float *x, float *out_s, float *out_m) {
    enum { M = 32 };
    float lo = 0.0f, hi = x[0];
    double sx = 0.0, sxx = 0.0;
    for (int i = 0; i < M; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sx += x[i];
        sxx += (double)x[i] * x[i];
    }
    if (hi <= lo) { /* constant non-positive block: s = 0, m = -lo */
        *out_s = 0.0f;
        *out_m = -lo;
        return;
    }
    float u[M]; /* x - lo >= 0 */
    for (int i = 0; i < M; i++) u[i] = x[i] - lo;
    const float irange = 1.0f / (hi - lo);
    float best_s = (hi - lo) / 15.0f, best_m = -lo;
    double best_err = INFINITY;
    for (int t = -QR_Q4_K_TRIES; t <= QR_Q4_K_TRIES; t++) {
        float iscale = (15.0f + QR_Q4_K_STEP * (float)t) * irange;
        float fsq, fsqq, fsxq;
        qr_sums_affine(x, u, M, iscale, 15, &fsq, &fsqq, &fsxq);
        double sq = fsq, sqq = fsqq, sxq = fsxq;
        double det = M * sqq - sq * sq;
        if (det <= 0) continue;
        double idet = 1.0 / det;
        double s = (M * sxq - sq * sx) * idet;
        double off = (sqq * sx - sq * sxq) * idet; /* x ~ s*q + off */
        double err;
        if (off > 0) {
            off = 0;
            s = sxq / sqq;
            err = sxx - s * sxq;
        } else {
            err = sxx - (s * sxq + off * sx); /* residual is orthogonal to q and 1 */
        }
        if (s <= 0) continue;
        if (err < best_err) {
            best_err = err;
            best_s = (float)s;
            best_m = (float)-off;
        }
    }
    *out_s = best_s;
    *out_m = best_m;
}

/*
 * Q4_K: each 32-element sub-block gets (s_j, m_j) from qr_fit_affine; the
 * super-block scales are d = max(s_j)/63 and dmin = max(m_j)/63 (stored as
 * fp16), the 6-bit codes sc_j = round(s_j/d), mn_j = round(m_j/dmin); the
 * nibbles are then chosen against the stored, rounded scales:
 * q = clamp(round((x + dmin*mn_j) / (d*sc_j)), 0, 15).
 */
void quant_quantize_row_q4_k(const float *x, block_q4_k *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float s[8], m[8], smax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < 8; j++) {
            qr_fit_affine(x + 32 * j, &s[j], &m[j]);
            smax = fmaxf(smax, s[j]);
            mmax = fmaxf(mmax, m[j]);
        }
        y[b].d = quant_f32_to_fp16(smax / 63.0f);
        y[b].dmin = quant_f32_to_fp16(mmax / 63.0f);
        float d = quant_fp16_to_f32(y[b].d), dmin = quant_fp16_to_f32(y[b].dmin);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = (uint8_t)(d > 0.0f ? qr_round_clamp(s[j] / d, 0, 63) : 0);
            mn[j] = (uint8_t)(dmin > 0.0f ? qr_round_clamp(m[j] / dmin, 0, 63) : 0);
        }
        qr_q4_k_pack_scales(sc, mn, y[b].scales);
        uint8_t q[QK_K];
        for (int j = 0; j < 8; j++) {
            float ds = d * (float)sc[j], dm = dmin * (float)mn[j];
            float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
            for (int i = 0; i < 32; i++) q[32 * j + i] = (uint8_t)qr_round_clamp((x[32 * j + i] + dm) * ids, 0, 15);
        }
        for (int c = 0; c < QK_K / 64; c++) {
            for (int l = 0; l < 32; l++) {
                y[b].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
            }
        }
    }
}

/*
 * Q6_K: each 16-element sub-block gets a signed scale s_j from
 * qr_fit_symmetric over levels -32..31; d = max|s_j|/127 (fp16) and the int8
 * codes sc_j = round(s_j/d) in -127..127; then q = clamp(round(x/(d*sc_j)),
 * -32, 31) against the stored scales, stored as q+32 split into ql/qh.
 */
void quant_quantize_row_q6_k(const float *x, block_q6_k *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float s[16], amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            s[j] = qr_fit_symmetric(x + 16 * j, 16, -32, 31, QR_Q6_K_TRIES, QR_Q6_K_STEP);
            amax = fmaxf(amax, fabsf(s[j]));
        }
        y[b].d = quant_f32_to_fp16(amax / 127.0f);
        float d = quant_fp16_to_f32(y[b].d);
        uint8_t q[QK_K];
        for (int j = 0; j < 16; j++) {
            y[b].scales[j] = (int8_t)(d > 0.0f ? qr_round_clamp(s[j] / d, -127, 127) : 0);
            float ds = d * (float)y[b].scales[j];
            float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
            for (int i = 0; i < 16; i++) q[16 * j + i] = (uint8_t)(qr_round_clamp(x[16 * j + i] * ids, -32, 31) + 32);
        }
        /* element 128h + 32g + l: low nibble in ql[64h + l + 32(g & 1)]
         * (low half for g < 2, high half otherwise), top two bits at bit 2g
         * of qh[32h + l] (FORMATS 2.3) */
        for (int h = 0; h < 2; h++) {
            const uint8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                uint8_t q0 = qq[l], q1 = qq[l + 32], q2 = qq[l + 64], q3 = qq[l + 96];
                y[b].ql[64 * h + l] = (uint8_t)((q0 & 0x0F) | ((q2 & 0x0F) << 4));
                y[b].ql[64 * h + l + 32] = (uint8_t)((q1 & 0x0F) | ((q3 & 0x0F) << 4));
                y[b].qh[32 * h + l] = (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
            }
        }
    }
}

/* ---- weight quantisers of the remaining types ---- */

/*
 * Search sizes for the remaining types, chosen as above (twice the
 * candidates gain well under 1% of the error): stretch factors of the level
 * range 1 + step*t for t = -tries..tries.
 */
#define QR_RANGE_TRIES 3
#define QR_RANGE_STEP  0.02f /* Q4_1, Q5_1, Q5_K: 16 or 32 levels */
#define QR_Q2_K_TRIES  4
#define QR_Q2_K_STEP   0.08f /* 4 levels: coarser steps pay */
#define QR_Q5_0_TRIES  3
#define QR_Q5_0_STEP   0.05f
#define QR_Q3_K_TRIES  3
#define QR_Q3_K_STEP   0.1f
#define QR_IQ4_TRIES   4
#define QR_IQ4_STEP    0.05f

/*
 * Affine fit of m values (m % 8 == 0, m <= 32) as s*q + off with q in
 * 0..nmax and s >= 0; if nonpos_offset, off <= 0 as well (the K-quant
 * sub-block model d*sc*q - dmin*mn). Starts from the range [lo, max(x)]
 * with lo = min(x) (or min(x, 0) if nonpos_offset); each candidate
 * stretches the level count by 1 + step*t, rounds the levels and refits
 * (s, off) by least squares on the 2x2 normal equations (off clamped to 0
 * and s refitted if nonpos_offset forbids the fitted offset); the squared
 * error of each fit is known in closed form, and the smallest wins (the
 * same method as qr_fit_affine, with the level count and offset rule as
 * parameters). A constant block gives s = 0, off = its value (clamped to
 * <= 0 if nonpos_offset: then a positive constant is fitted by s).
 */
static void qr_fit_range(const float *x, int m, int nmax, bool nonpos_offset, int ntry, float step,
                         float *out_s, float *out_off) {
    float lo = nonpos_offset ? 0.0f : x[0], hi = x[0];
    double sx = 0.0, sxx = 0.0;
    for (int i = 0; i < m; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sx += x[i];
        sxx += (double)x[i] * x[i];
    }
    if (hi <= lo) {
        *out_s = 0.0f;
        *out_off = lo;
        return;
    }
    float u[32];
    for (int i = 0; i < m; i++) u[i] = x[i] - lo;
    const float irange = 1.0f / (hi - lo);
    float best_s = (hi - lo) / (float)nmax, best_off = lo;
    double best_err = INFINITY;
    for (int t = -ntry; t <= ntry; t++) {
        float iscale = (float)nmax * (1.0f + step * (float)t) * irange;
        float fsq, fsqq, fsxq;
        qr_sums_affine(x, u, m, iscale, nmax, &fsq, &fsqq, &fsxq);
        double sq = fsq, sqq = fsqq, sxq = fsxq;
        double det = m * sqq - sq * sq;
        if (det <= 0) continue;
        double s = (m * sxq - sq * sx) / det;
        double off = (sqq * sx - sq * sxq) / det;
        double err;
        if (nonpos_offset && off > 0) {
            off = 0;
            s = sxq / sqq;
            err = sxx - s * sxq;
        } else {
            err = sxx - (s * sxq + off * sx);
        }
        if (s <= 0) continue;
        if (err < best_err) {
            best_err = err;
            best_s = (float)s;
            best_off = (float)off;
        }
    }
    *out_s = best_s;
    *out_off = best_off;
}

/* Q4_1 and Q5_1 nibbles/fifth bits: q = clamp(round((x - m)/d), 0, nmax)
 * against the stored fp16 d and m. */
static void qr_levels_offset(const float *x, float d, float m, int nmax, uint8_t q[32]) {
    float id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = (uint8_t)qr_round_clamp((x[j] - m) * id, 0, nmax);
}

/*
 * Q4_1: per 32, (d, m) from qr_fit_range over levels 0..15 with a free
 * offset, stored as fp16; nibbles against the stored values.
 */
void quant_quantize_row_q4_1(const float *x, block_q4_1 *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK4_1 == 0);
    for (int64_t b = 0; b < n / QK4_1; b++, x += QK4_1) {
        float s, off;
        qr_fit_range(x, 32, 15, false, QR_RANGE_TRIES, QR_RANGE_STEP, &s, &off);
        y[b].d = quant_f32_to_fp16(s);
        y[b].m = quant_f32_to_fp16(off);
        uint8_t q[32];
        qr_levels_offset(x, quant_fp16_to_f32(y[b].d), quant_fp16_to_f32(y[b].m), 15, q);
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
    }
}

/* Stores 32 five-bit values: low nibbles as Q4_0/Q4_1 (element j low,
 * j + 16 high), bit 4 of element k at bit k of qh (little-endian u32). */
static void qr_pack_5bit(const uint8_t q[32], uint8_t qs[16], uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    for (int k = 0; k < 32; k++) h |= (uint32_t)(q[k] >> 4) << k;
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

/* Q5_0: as Q4_0 over levels -16..15. */
void quant_quantize_row_q5_0(const float *x, block_q5_0 *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK5_0 == 0);
    for (int64_t b = 0; b < n / QK5_0; b++, x += QK5_0) {
        float s = qr_fit_symmetric(x, 32, -16, 15, QR_Q5_0_TRIES, QR_Q5_0_STEP);
        y[b].d = quant_f32_to_fp16(s);
        float d = quant_fp16_to_f32(y[b].d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint8_t q[32];
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)(qr_round_clamp(x[j] * id, -16, 15) + 16);
        qr_pack_5bit(q, y[b].qs, y[b].qh);
    }
}

/* Q5_1: as Q4_1 over levels 0..31. */
void quant_quantize_row_q5_1(const float *x, block_q5_1 *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK5_1 == 0);
    for (int64_t b = 0; b < n / QK5_1; b++, x += QK5_1) {
        float s, off;
        qr_fit_range(x, 32, 31, false, QR_RANGE_TRIES, QR_RANGE_STEP, &s, &off);
        y[b].d = quant_f32_to_fp16(s);
        y[b].m = quant_f32_to_fp16(off);
        uint8_t q[32];
        qr_levels_offset(x, quant_fp16_to_f32(y[b].d), quant_fp16_to_f32(y[b].m), 31, q);
        qr_pack_5bit(q, y[b].qs, y[b].qh);
    }
}

/* Index of the IQ4_NL level nearest to v (ties to the lower level): the
 * number of midpoints between consecutive levels that v exceeds, found by a
 * four-step binary search over the 15 sorted midpoints (a NaN gives 0). */
static inline int qr_iq4_index(float v) {
    static const float mid[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                  7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f};
    int k = 8 * (v > mid[7]); /* comparisons as 0/1: no data-dependent branches */
    k += 4 * (v > mid[k + 3]);
    k += 2 * (v > mid[k + 1]);
    k += v > mid[k];
    return k;
}

/*
 * Fit of m values (m % 8 == 0) onto s * kvalues_iq4nl[idx]: candidates map the
 * largest-magnitude element onto -127 * (1 + step*t) (t = -tries..tries)
 * and onto +113; each picks the nearest levels and takes the least-squares
 * s = sum(x K)/sum(K K) for them (error sum(x x) - sum(x K)^2/sum(K K)).
 * Returns the best s (0 for an all-zero input).
 */
static float qr_fit_iq4(const float *x, int m) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < m; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    float best_sxk = 0.0f, best_skk = 0.0f;
    for (int t = -QR_IQ4_TRIES; t <= QR_IQ4_TRIES + 1; t++) {
        float target = t <= QR_IQ4_TRIES ? -127.0f * (1.0f + QR_IQ4_STEP * (float)t) : 113.0f;
        float iscale = target / max, a[QR_LANES] = {0}, c[QR_LANES] = {0};
        for (int i = 0; i < m; i += QR_LANES) {
            for (int l = 0; l < QR_LANES; l++) {
                float k = (float)quant_kvalues_iq4nl[qr_iq4_index(iscale * x[i + l])];
                a[l] += x[i + l] * k;
                c[l] += k * k;
            }
        }
        float sxk = qr_lane_sum(a), skk = qr_lane_sum(c);
        if (best_skk == 0.0f || (double)sxk * sxk * best_skk > (double)best_sxk * best_sxk * skk) {
            best_sxk = sxk;
            best_skk = skk;
        }
    }
    return best_sxk / best_skk;
}

/* IQ4_NL: per 32, the scale from qr_fit_iq4 (fp16), then the nearest level
 * of x / d for the stored d. */
void quant_quantize_row_iq4_nl(const float *x, block_iq4_nl *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK4_NL == 0);
    for (int64_t b = 0; b < n / QK4_NL; b++, x += QK4_NL) {
        y[b].d = quant_f32_to_fp16(qr_fit_iq4(x, 32));
        float d = quant_fp16_to_f32(y[b].d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 16; j++) {
            y[b].qs[j] = (uint8_t)(qr_iq4_index(x[j] * id) | (qr_iq4_index(x[j + 16] * id) << 4));
        }
    }
}

/* Index of the MXFP4 magnitude (0, 1, 2, 3, 4, 6, 8, 12) nearest to v >= 0. */
static inline int qr_fp4_index(float v) {
    static const float mid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
    int k = 0;
    for (int i = 0; i < 7; i++) k += v > mid[i];
    return k;
}

/*
 * MXFP4: per 32, the exponent e0 is the smallest with 12 * 2^(e0-128) >=
 * max|x| (nothing clipped); e0 and e0 - 1 (clipping the largest values) are
 * both tried, each element taking the nearest code, and the one with the
 * smaller squared error is kept. e in 0..254; an all-zero block is e = 0,
 * all codes 0.
 */
void quant_quantize_row_mxfp4(const float *x, block_mxfp4 *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_MXFP4 == 0);
    for (int64_t b = 0; b < n / QK_MXFP4; b++, x += QK_MXFP4) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        int e0 = 0;
        if (amax > 0.0f) {
            int k;
            float f = frexpf(amax / 12.0f, &k); /* amax/12 = f 2^k, f in [0.5, 1) */
            e0 = 128 + (f > 0.5f ? k : k - 1);
            e0 = e0 < 0 ? 0 : (e0 > 254 ? 254 : e0);
        }
        uint8_t best_q[32] = {0};
        int best_e = e0;
        double best_err = INFINITY;
        for (int e = e0; e >= e0 - 1 && e >= 0 && amax > 0.0f; e--) {
            float h = quant_e8m0_half_to_f32((uint8_t)e), ih = 1.0f / h;
            uint8_t q[32];
            double err = 0.0;
            for (int j = 0; j < 32; j++) {
                int k = qr_fp4_index(fabsf(x[j]) * ih);
                q[j] = (uint8_t)(k | (x[j] < 0.0f && k > 0 ? 8 : 0));
                double diff = (double)x[j] - (double)quant_kvalues_mxfp4[q[j]] * h;
                err += diff * diff;
            }
            if (err < best_err) {
                best_err = err;
                best_e = e;
                memcpy(best_q, q, sizeof q);
            }
        }
        y[b].e = (uint8_t)best_e;
        for (int j = 0; j < 16; j++) y[b].qs[j] = (uint8_t)(best_q[j] | (best_q[j + 16] << 4));
    }
}

/*
 * The K-quant two-level affine scheme shared by Q2_K (16 sub-blocks of 16,
 * 4-bit scale and min codes, levels 0..3) and Q5_K (8 of 32, 6-bit codes,
 * levels 0..31): each sub-block gets (s_j, m_j = -off_j >= 0) from
 * qr_fit_range; d = max(s_j)/cmax and dmin = max(m_j)/cmax (fp16), the codes
 * sc_j = round(s_j/d), mn_j = round(m_j/dmin) in 0..cmax; then the levels
 * against the stored values: q = clamp(round((x + dmin*mn_j)/(d*sc_j)), 0, nmax).
 * Writes d, dmin and the codes and levels of all QK_K elements.
 */
static void qr_two_level_affine(const float *x, int nsub, int nmax, int cmax, int ntry, float step,
                                mica_fp16 *d_out, mica_fp16 *dmin_out, uint8_t *sc, uint8_t *mn,
                                uint8_t q[QK_K]) {
    const int m = QK_K / nsub;
    float s[16], off[16], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < nsub; j++) {
        qr_fit_range(x + m * j, m, nmax, true, ntry, step, &s[j], &off[j]);
        smax = fmaxf(smax, s[j]);
        mmax = fmaxf(mmax, -off[j]);
    }
    *d_out = quant_f32_to_fp16(smax / (float)cmax);
    *dmin_out = quant_f32_to_fp16(mmax / (float)cmax);
    float d = quant_fp16_to_f32(*d_out), dmin = quant_fp16_to_f32(*dmin_out);
    for (int j = 0; j < nsub; j++) {
        sc[j] = (uint8_t)(d > 0.0f ? qr_round_clamp(s[j] / d, 0, cmax) : 0);
        mn[j] = (uint8_t)(dmin > 0.0f ? qr_round_clamp(-off[j] / dmin, 0, cmax) : 0);
        float ds = d * (float)sc[j], dm = dmin * (float)mn[j];
        float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
        for (int i = 0; i < m; i++) q[m * j + i] = (uint8_t)qr_round_clamp((x[m * j + i] + dm) * ids, 0, nmax);
    }
}

/* Q2_K: qr_two_level_affine with 16 x 16, levels 0..3, 4-bit codes; element
 * 128h + 32j + l at bits 2j of qs[32h + l]. */
void quant_quantize_row_q2_k(const float *x, block_q2_k *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t sc[16], mn[16], q[QK_K];
        qr_two_level_affine(x, 16, 3, 15, QR_Q2_K_TRIES, QR_Q2_K_STEP, &y[b].d, &y[b].dmin, sc, mn, q);
        for (int j = 0; j < 16; j++) y[b].scales[j] = (uint8_t)(sc[j] | (mn[j] << 4));
        memset(y[b].qs, 0, sizeof y[b].qs);
        for (int i = 0; i < QK_K; i++) {
            int h = i / 128, j = (i % 128) / 32, l = i % 32;
            y[b].qs[32 * h + l] |= (uint8_t)(q[i] << (2 * j));
        }
    }
}

/* Q5_K: qr_two_level_affine with 8 x 32, levels 0..31, 6-bit codes packed
 * as Q4_K's; low nibbles as Q4_K, bit 4 of element i at bit i/32 of
 * qh[i % 32]. */
void quant_quantize_row_q5_k(const float *x, block_q5_k *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        uint8_t sc[8], mn[8], q[QK_K];
        qr_two_level_affine(x, 8, 31, 63, QR_RANGE_TRIES, QR_RANGE_STEP, &y[b].d, &y[b].dmin, sc, mn, q);
        qr_q4_k_pack_scales(sc, mn, y[b].scales);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int i = 0; i < QK_K; i++) y[b].qh[i % 32] |= (uint8_t)((q[i] >> 4) << (i / 32));
        for (int c = 0; c < QK_K / 64; c++) {
            for (int l = 0; l < 32; l++) {
                y[b].qs[32 * c + l] = (uint8_t)((q[64 * c + l] & 0x0F) | ((q[64 * c + 32 + l] & 0x0F) << 4));
            }
        }
    }
}

/* Signed 6-bit codes c_j = round(s_j/d) in -32..31 for the largest-magnitude
 * s mapped to -32 exactly: d = s_big/-32 (fp16, sign opposite to s_big). */
static mica_fp16 qr_signed_codes(const float *s, int ns, int8_t *codes) {
    float big = 0.0f;
    for (int j = 0; j < ns; j++) big = fabsf(s[j]) > fabsf(big) ? s[j] : big;
    mica_fp16 dh = quant_f32_to_fp16(big / -32.0f);
    float d = quant_fp16_to_f32(dh);
    for (int j = 0; j < ns; j++) codes[j] = (int8_t)(d != 0.0f ? qr_round_clamp(s[j] / d, -32, 31) : 0);
    return dh;
}

/*
 * Q3_K: each 16-element sub-block gets s_j from qr_fit_symmetric over
 * levels -4..3; the 6-bit codes from qr_signed_codes; q = clamp(round(x /
 * (d*sc_j)), -4, 3) against the stored values, stored as u = q + 4: the low
 * two bits at 2j of qs[32h + l] and the high bit at bit 4h + j of hmask[l]
 * (element 128h + 32j + l; a set bit means no subtraction of 4).
 */
void quant_quantize_row_q3_k(const float *x, block_q3_k *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float s[16];
        int8_t sc[16];
        for (int j = 0; j < 16; j++) s[j] = qr_fit_symmetric(x + 16 * j, 16, -4, 3, QR_Q3_K_TRIES, QR_Q3_K_STEP);
        y[b].d = qr_signed_codes(s, 16, sc);
        float d = quant_fp16_to_f32(y[b].d);
        /* codes + 32: low nibbles of j and j + 8 share byte j; the top two
         * bits of j at bits 2(j/4) of byte 8 + j%4 */
        uint8_t c[16];
        for (int j = 0; j < 16; j++) c[j] = (uint8_t)(sc[j] + 32);
        for (int j = 0; j < 8; j++) y[b].scales[j] = (uint8_t)((c[j] & 0x0F) | ((c[j + 8] & 0x0F) << 4));
        for (int k = 0; k < 4; k++) {
            y[b].scales[8 + k] = (uint8_t)((c[k] >> 4) | ((c[k + 4] >> 4) << 2) | ((c[k + 8] >> 4) << 4) |
                                           ((c[k + 12] >> 4) << 6));
        }
        memset(y[b].qs, 0, sizeof y[b].qs);
        memset(y[b].hmask, 0, sizeof y[b].hmask);
        for (int j = 0; j < 16; j++) {
            float ds = d * (float)sc[j];
            float ids = ds != 0.0f ? 1.0f / ds : 0.0f;
            for (int t = 0; t < 16; t++) {
                int i = 16 * j + t, h = i / 128, g = (i % 128) / 32, l = i % 32;
                int u = qr_round_clamp(x[i] * ids, -4, 3) + 4;
                y[b].qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * g));
                y[b].hmask[l] |= (uint8_t)((u >> 2) << (4 * h + g));
            }
        }
    }
}

/*
 * IQ4_XS: each 32-element sub-block gets s_b from qr_fit_iq4; the signed
 * 6-bit codes (ls - 32) from qr_signed_codes; then the nearest level of x /
 * (d * (ls - 32)) for the stored values.
 */
void quant_quantize_row_iq4_xs(const float *x, block_iq4_xs *y, int64_t n) {
    MICA_DEBUG_ASSERT(n % QK_K == 0);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float s[8];
        int8_t sc[8];
        for (int j = 0; j < 8; j++) s[j] = qr_fit_iq4(x + 32 * j, 32);
        y[b].d = qr_signed_codes(s, 8, sc);
        float d = quant_fp16_to_f32(y[b].d);
        uint16_t sh = 0;
        memset(y[b].scales_l, 0, sizeof y[b].scales_l);
        for (int j = 0; j < 8; j++) {
            int ls = sc[j] + 32;
            y[b].scales_l[j / 2] |= (uint8_t)((ls & 0x0F) << (4 * (j % 2)));
            sh |= (uint16_t)((ls >> 4) << (2 * j));
            float dl = d * (float)sc[j];
            float id = dl != 0.0f ? 1.0f / dl : 0.0f;
            const float *xs = x + 32 * j;
            for (int t = 0; t < 16; t++) {
                y[b].qs[16 * j + t] = (uint8_t)(qr_iq4_index(xs[t] * id) | (qr_iq4_index(xs[t + 16] * id) << 4));
            }
        }
        y[b].scales_h = sh;
    }
}
