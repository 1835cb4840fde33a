/* isa.h: which CPU kernel variant the ops run, and one source compiled for each.
 *
 * Variants: AP_ISA_AVX512 (AVX-512F/BW/DQ/VL + FMA), AP_ISA_AVX2 (AVX2 + FMA),
 * AP_ISA_GENERIC (baseline x86-64 / whatever the build targets; conv2d runs
 * im2col + BLAS). The build does not use -march: the best variant the CPU
 * supports is chosen at run time, or the one AP_CPU_ISA=avx512|avx2|generic
 * names (refused, with the CPU's features, when the CPU lacks it). The choice
 * is made once per process, by ap_cpu_isa_init() (called by ap_ctx_init).
 *
 * One source per kernel: a kernel body is written once as an always_inline
 * function NAME_body (plain C, GCC vector extensions, or the width-generic
 * helpers of the op) and AP_ISA_KERNEL(NAME, params, args) compiles it three
 * times, with target attributes, into NAME_generic / NAME_avx2 / NAME_avx512
 * and a table NAME_tab indexed by ap_isa. Call ap_isa_pick(ctx, NAME) to get
 * the variant of a context (ap_ctx.isa, set once when it is made). OpenMP regions must stay outside the bodies (an
 * outlined region would be compiled for the default target).
 */
#ifndef AP_ISA_H
#define AP_ISA_H

typedef enum { AP_ISA_GENERIC = 0, AP_ISA_AVX2 = 1, AP_ISA_AVX512 = 2, AP_ISA_COUNT } ap_isa;

/* Chooses the variant (AP_CPU_ISA or the best supported); AP_ERR with a
 * message when AP_CPU_ISA is not one of the names or the CPU lacks it.
 * Idempotent. */
int ap_cpu_isa_init(void);
/* The variant in use (initialising on first use; GENERIC if that failed). */
ap_isa ap_cpu_isa(void);
/* 1 when this CPU can run the variant. */
int ap_cpu_isa_supported(ap_isa isa);
/* "avx512", "avx2", "generic". */
const char *ap_isa_name(ap_isa isa);
/* Writes e.g. "cpu: AMD EPYC (family 26 model 2); features: sse4.2 avx2 fma
 * avx512f ...; kernels: avx512 (best supported)" into buf. */
const char *ap_cpu_describe(char *buf, int size);

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define AP_ISA_X86 1
#define AP_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define AP_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,prefer-vector-width=512")))
#else
#define AP_ISA_X86 0
#define AP_TARGET_AVX2
#define AP_TARGET_AVX512
#endif

#define AP_ISA_INLINE static inline __attribute__((always_inline))

/* Defines NAME_generic, NAME_avx2, NAME_avx512 (void functions with the
 * parameter list params, calling NAME_body args) and NAME_tab. */
#define AP_ISA_KERNEL(name, params, args)                                        \
    static void name##_generic params { name##_body args; }                      \
    AP_TARGET_AVX2 static void name##_avx2 params { name##_body args; }          \
    AP_TARGET_AVX512 static void name##_avx512 params { name##_body args; }      \
    static void (*const name##_tab[AP_ISA_COUNT]) params = {                     \
        name##_generic, name##_avx2, name##_avx512}

/* The same for a kernel returning ret. */
#define AP_ISA_KERNEL_RET(ret, name, params, args)                               \
    static ret name##_generic params { return name##_body args; }                \
    AP_TARGET_AVX2 static ret name##_avx2 params { return name##_body args; }    \
    AP_TARGET_AVX512 static ret name##_avx512 params { return name##_body args; } \
    static ret (*const name##_tab[AP_ISA_COUNT]) params = {                      \
        name##_generic, name##_avx2, name##_avx512}

#define ap_isa_pick(ctx, name) (name##_tab[(ctx)->isa])

#endif
