/* test_cuda_table.c: the CUDA backend's op table and its scratch queries,
 * without a GPU (runs wherever the CUDA backend is built): every entry of
 * ap_backend is filled (none reports "not available on the cuda backend"),
 * the table names itself cuda on AP_CUDA, a context without a device fails
 * naming the reason, and dry runs on a CUDA context (the public ops on
 * unbacked device descriptors, docs/backend.md section 4) measure the
 * device scratch the docs state: a bf16-weight linear rounds its activation
 * into 2 * rows * I bytes, the attention backward takes B*H*Lq floats,
 * count_nonfinite 64 bytes, an f32 linear none. All comparisons exact. */
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "cuda_backend.h"
#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/rows.h"
#include "testutil.h"

/* A descriptor of that shape on AP_CUDA over never-backed address space. */
static ap_tensor unbacked(ap_dtype dt, int ndim, const int64_t *shape) {
    ap_tensor t = ap_tensor_of(NULL, dt, AP_CUDA, ndim, shape);
    t.data = ap_unbacked_alloc(ap_nbytes(&t), "dry-run tensor");
    return t;
}
#define UB(dt, ...) unbacked(dt, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8), (int64_t[]){__VA_ARGS__})

int main(void) {
    printf("test_cuda_table: the CUDA op table and its scratch queries (no GPU needed)\n");
    const ap_backend *be = &ap_cuda_backend;
    tu_check(!strcmp(be->name, "cuda") && be->device == AP_CUDA, "table: cuda on AP_CUDA");
    /* every function pointer from alloc up to the first scratch query is set */
    const char *first = (const char *)&be->alloc, *end = (const char *)&be->copy_scratch;
    int null = 0, n = 0;
    for (const char *p = first; p < end; p += sizeof(void *), n++) {
        void *f;
        memcpy(&f, p, sizeof f);
        null += f == NULL;
    }
    tu_check(null == 0, "%d of %d memory and op entries are filled (%d NULL)", n - null, n, null);

    char why[256];
    if (ap_cuda_device_count(why, sizeof why) == 0) {
        ap_ctx c;
        tu_expect_error("context without a device", ap_cuda_ctx_init(&c, -1, 0), "no CUDA device",
                        NULL);
    }

    /* dry runs on a CUDA context: no device state is touched */
    ap_ctx real;
    memset(&real, 0, sizeof real);
    real.be = be;
    real.device = AP_CUDA;
    real.n_threads = 1;
    ap_ctx dry = ap_ctx_dry(&real);
    int rc;
    ap_tensor in = UB(AP_F32, 2, 77, 768), out = UB(AP_F32, 2, 77, 320);
    ap_tensor w32 = UB(AP_F32, 320, 768), w16 = UB(AP_BF16, 320, 768);
    rc = ap_linear_forward(&dry, &out, &in, &w32, NULL);
    tu_check(rc == 0 && dry.scratch_peak == 0, "f32 linear: no device scratch (%zu)",
             dry.scratch_peak);
    rc = ap_linear_forward(&dry, &out, &in, &w16, NULL);
    tu_check(rc == 0 && dry.scratch_peak == ap_align64((size_t)2 * 77 * 768 * 2),
             "bf16-weight linear: its activation in bf16, 2 * 154 * 768 bytes (%zu)",
             dry.scratch_peak);
    dry.scratch_peak = 0;
    ap_tensor q = UB(AP_F32, 2, 256, 320), k = UB(AP_F32, 2, 77, 320), v = UB(AP_F32, 2, 77, 320);
    ap_tensor o = UB(AP_F32, 2, 256, 320), lse = UB(AP_F32, 2, 8, 256);
    ap_tensor dq = UB(AP_F32, 2, 256, 320), dk = UB(AP_F32, 2, 77, 320), dv = UB(AP_F32, 2, 77, 320);
    rc = ap_attention_backward(&dry, &dq, &dk, &dv, &o, &q, &k, &v, &o, &lse, 8, 0.158f, 0);
    tu_check(rc == 0 && dry.scratch_peak == ap_align64((size_t)2 * 8 * 256 * 4),
             "attention backward: B*H*Lq floats of rows dout.out (%zu) %s", dry.scratch_peak,
             rc ? ap_errmsg() : "");
    dry.scratch_peak = 0;
    ap_tensor cnt = UB(AP_F32, 1);
    rc = ap_count_nonfinite(&dry, &cnt, &q);
    tu_check(rc == 0 && dry.scratch_peak == 64,
             "count_nonfinite: 64 bytes (%zu)", dry.scratch_peak);
    return tu_exit();
}
