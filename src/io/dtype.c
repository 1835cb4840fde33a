/* dtype.c: element type table and float conversions. */
#include "dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} k_types[AP_DT_COUNT] = {
    [AP_DT_F32] = {"F32", 4}, [AP_DT_F16] = {"F16", 2}, [AP_DT_BF16] = {"BF16", 2},
    [AP_DT_F64] = {"F64", 8}, [AP_DT_I64] = {"I64", 8}, [AP_DT_I32] = {"I32", 4},
    [AP_DT_I16] = {"I16", 2}, [AP_DT_I8] = {"I8", 1},   [AP_DT_U8] = {"U8", 1},
    [AP_DT_BOOL] = {"BOOL", 1},
};

size_t ap_file_dtype_size(ap_file_dtype t) { return (unsigned)t < AP_DT_COUNT ? k_types[t].size : 0; }

const char *ap_file_dtype_name(ap_file_dtype t) {
    return (unsigned)t < AP_DT_COUNT ? k_types[t].name : "?";
}

int ap_file_dtype_parse(const char *s) {
    for (int t = 0; t < AP_DT_COUNT; t++)
        if (strcmp(s, k_types[t].name) == 0) return t;
    return -1;
}

int ap_file_dtype_is_float(ap_file_dtype t) {
    return t == AP_DT_F32 || t == AP_DT_F16 || t == AP_DT_BF16 || t == AP_DT_F64;
}

float ap_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float ap_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void ap_convert_to_f32(float *dst, const void *src, ap_file_dtype t, size_t n) {
    const unsigned char *s = src;
    switch (t) {
    case AP_DT_F32: memcpy(dst, s, n * 4); break;
    case AP_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ap_f16_to_f32(h);
        }
        break;
    case AP_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = ap_bf16_to_f32(h);
        }
        break;
    case AP_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default: memset(dst, 0, n * 4); break;
    }
}

/* float32 -> bfloat16, round to nearest even (NaN stays NaN). */
uint16_t ap_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* float32 -> IEEE half, round to nearest even, overflow to inf. */
uint16_t ap_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);         /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);        /* overflow: inf */
    if (a < 0x38800000u) {                                          /* subnormal or 0 */
        if (a < 0x33000000u) return (uint16_t)sign;                 /* < half the smallest */
        const uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24 */
        uint32_t h = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((a - 0x38000000u) >> 13);
    const uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
