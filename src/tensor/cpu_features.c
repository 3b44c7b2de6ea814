/*
 * cpu_features.c - run-time CPU detection and kernel-table selection
 * (layer: tensor). Contracts in kern.h.
 *
 * An ISA counts as usable only if the CPU reports the instructions AND the
 * operating system saves the matching register state on context switches
 * (CPUID.1:ECX.OSXSAVE, then XCR0 read with xgetbv: bits 1-2 for XMM/YMM,
 * bits 5-7 for the AVX-512 opmask and ZMM state).
 *
 * The ISA kernel files are built only on x86-64 (Makefile), so this file
 * names kern_avx2_fill / kern_avx512_fill only there.
 */
#include <string.h>

#include "mica_internal.h"
#include "tensor/kern.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CPUF_X86 1
#include <cpuid.h>

static uint64_t cpuf_xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#else
#define CPUF_X86 0
#endif

void cpu_features_detect(cpu_features *out) {
    memset(out, 0, sizeof *out);
#if CPUF_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    uint64_t xcr0 = cpuf_xgetbv0();
    bool ymm_ok = (xcr0 & 0x6) == 0x6;    /* XMM and YMM state */
    bool zmm_ok = (xcr0 & 0xE6) == 0xE6;  /* plus opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok) return;
    out->fma = fma;
    out->f16c = f16c;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned max_sub7 = a;
    out->avx2 = (b >> 5) & 1;
    if (zmm_ok) {
        out->avx512f = (b >> 16) & 1;
        out->avx512dq = (b >> 17) & 1;
        out->avx512bw = (b >> 30) & 1;
        out->avx512vl = (b >> 31) & 1;
        out->avx512vnni = (c >> 11) & 1;
        if (max_sub7 >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            out->avx512bf16 = (a >> 5) & 1;
        }
    }
#endif
}

bool kern_isa_available(enum kern_isa isa, const cpu_features *cpu) {
    switch (isa) {
    case KERN_ISA_GENERIC:
        return true;
    case KERN_ISA_AVX2:
        return CPUF_X86 && cpu->avx2 && cpu->fma && cpu->f16c;
    case KERN_ISA_AVX512:
        /* the AVX-512 table is layered on the AVX2 one (kern_table_init) */
        return CPUF_X86 && cpu->avx2 && cpu->fma && cpu->f16c && cpu->avx512f &&
               cpu->avx512bw && cpu->avx512vl && cpu->avx512dq && cpu->avx512vnni;
    default:
        return false;
    }
}

enum kern_isa kern_best_isa(const cpu_features *cpu) {
    if (kern_isa_available(KERN_ISA_AVX512, cpu)) return KERN_ISA_AVX512;
    if (kern_isa_available(KERN_ISA_AVX2, cpu)) return KERN_ISA_AVX2;
    return KERN_ISA_GENERIC;
}

/*
 * Generic kernels first; for AVX2 the AVX2 overlay; for AVX-512 the AVX2
 * overlay and then the AVX-512 one (so an entry the AVX-512 file leaves out
 * runs the AVX2 kernel rather than the scalar one). The caller guarantees the
 * ISA is available (asserted here: the overlay functions are compiled with
 * the ISA's flags and must not run on a CPU without it).
 */
void kern_table_init(kern_table *t, enum kern_isa isa) {
    MICA_ASSERT(isa >= KERN_ISA_GENERIC && isa < KERN_ISA_COUNT);
    cpu_features cpu;
    cpu_features_detect(&cpu);
    MICA_ASSERT(kern_isa_available(isa, &cpu));
    kern_generic_fill(t);
#if CPUF_X86
    if (isa >= KERN_ISA_AVX2) kern_avx2_fill(t);
    if (isa >= KERN_ISA_AVX512) kern_avx512_fill(t);
#endif
    t->isa = CPUF_X86 ? isa : KERN_ISA_GENERIC;
    static const char *const names[KERN_ISA_COUNT] = {"generic", "avx2", "avx512"};
    t->name = names[t->isa];
}
