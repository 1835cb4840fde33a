/* isa.c: CPU feature detection and the AP_CPU_ISA choice (see isa.h). */
#include "isa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#if AP_ISA_X86
#include <cpuid.h>
#endif

static int g_isa = -1; /* chosen variant, -1 before ap_cpu_isa_init */

const char *ap_isa_name(ap_isa isa) {
    switch (isa) {
    case AP_ISA_AVX512: return "avx512";
    case AP_ISA_AVX2: return "avx2";
    default: return "generic";
    }
}

int ap_cpu_isa_supported(ap_isa isa) {
#if AP_ISA_X86
    __builtin_cpu_init();
    switch (isa) {
    case AP_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
    case AP_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return 1;
    }
#else
    return isa == AP_ISA_GENERIC;
#endif
}

static ap_isa best(void) {
    for (int i = AP_ISA_COUNT - 1; i > 0; i--)
        if (ap_cpu_isa_supported((ap_isa)i)) return (ap_isa)i;
    return AP_ISA_GENERIC;
}

static char *features(char *buf, int size) {
    buf[0] = '\0';
#if AP_ISA_X86
    __builtin_cpu_init();
    int len = 0;
    /* __builtin_cpu_supports needs a string literal: one line per feature. */
#define F(s)                                                                        \
    if (__builtin_cpu_supports(s) && len < size)                                    \
        len += snprintf(buf + len, (size_t)(size - len), "%s%s", len ? " " : "", s);
    F("sse4.2") F("avx") F("avx2") F("fma") F("f16c") F("avx512f") F("avx512bw")
    F("avx512dq") F("avx512vl") F("avx512bf16")
#undef F
    if (!len) snprintf(buf, (size_t)size, "baseline x86-64");
#else
    snprintf(buf, (size_t)size, "non-x86 (generic kernels only)");
#endif
    return buf;
}

int ap_cpu_isa_init(void) {
    if (g_isa >= 0) return AP_OK;
    const char *e = getenv("AP_CPU_ISA");
    if (!e || !*e) {
        g_isa = best();
        return AP_OK;
    }
    for (int i = 0; i < AP_ISA_COUNT; i++)
        if (!strcmp(e, ap_isa_name((ap_isa)i))) {
            if (!ap_cpu_isa_supported((ap_isa)i)) {
                char f[160];
                return ap_fail("AP_CPU_ISA: expected a variant this CPU supports (best: %s; "
                               "CPU features: %s), found \"%s\"",
                               ap_isa_name(best()), features(f, sizeof f), e);
            }
            g_isa = i;
            return AP_OK;
        }
    return ap_fail("AP_CPU_ISA: expected avx512, avx2 or generic, found \"%s\"", e);
}

ap_isa ap_cpu_isa(void) {
    if (g_isa < 0 && ap_cpu_isa_init() != AP_OK) g_isa = AP_ISA_GENERIC;
    return (ap_isa)g_isa;
}

static void cpu_model(char *buf, int size) {
    snprintf(buf, (size_t)size, "unknown CPU");
#if AP_ISA_X86
    unsigned r[12];
    if (__get_cpuid_max(0x80000000u, NULL) >= 0x80000004u) {
        for (unsigned k = 0; k < 3; k++)
            __get_cpuid(0x80000002u + k, &r[4 * k], &r[4 * k + 1], &r[4 * k + 2], &r[4 * k + 3]);
        char s[49];
        memcpy(s, r, 48);
        s[48] = '\0';
        char *p = s;
        while (*p == ' ') p++;
        for (char *q = p + strlen(p); q > p && q[-1] == ' ';) *--q = '\0';
        unsigned a = 0, b = 0, c = 0, d = 0;
        __get_cpuid(1, &a, &b, &c, &d);
        unsigned fam = (a >> 8) & 15, model = (a >> 4) & 15;
        if (fam == 15) fam += (a >> 20) & 255;
        if (fam >= 6) model |= ((a >> 16) & 15) << 4;
        snprintf(buf, (size_t)size, "%s (family %u model %u)", p, fam, model);
    }
#endif
}

const char *ap_cpu_describe(char *buf, int size) {
    char m[96], f[160];
    cpu_model(m, sizeof m);
    features(f, sizeof f);
    const ap_isa isa = ap_cpu_isa();
    const char *e = getenv("AP_CPU_ISA");
    snprintf(buf, (size_t)size, "cpu: %s; features: %s; kernels: %s (%s)", m, f,
             ap_isa_name(isa), e && *e ? "AP_CPU_ISA" : "best supported");
    return buf;
}
