/* dtype.h: element types found in checkpoint files and conversion to float32. */
#ifndef AP_DTYPE_H
#define AP_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    AP_DT_F32,
    AP_DT_F16,
    AP_DT_BF16,
    AP_DT_F64,
    AP_DT_I64,
    AP_DT_I32,
    AP_DT_I16,
    AP_DT_I8,
    AP_DT_U8,
    AP_DT_BOOL,
    AP_DT_COUNT
} ap_file_dtype;

size_t ap_file_dtype_size(ap_file_dtype t);
const char *ap_file_dtype_name(ap_file_dtype t); /* safetensors spelling: "F32", "BF16"... */
/* Parse a safetensors dtype string; returns -1 when unknown. */
int ap_file_dtype_parse(const char *s);
/* True for types that convert to float32 (F32, F16, BF16, F64). */
int ap_file_dtype_is_float(ap_file_dtype t);
/* dst[i] = (float)src[i] for n elements of a floating type (little-endian). */
void ap_convert_to_f32(float *dst, const void *src, ap_file_dtype t, size_t n);

float ap_f16_to_f32(uint16_t h);
float ap_bf16_to_f32(uint16_t h);
/* float32 -> bfloat16 / IEEE half, round to nearest even (NaN stays NaN;
 * beyond the f16 range: inf). */
uint16_t ap_f32_to_bf16(float f);
uint16_t ap_f32_to_f16(float f);

#endif
