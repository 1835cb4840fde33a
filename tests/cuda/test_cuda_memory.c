/* test_cuda_memory.c: the CUDA backend's memory entries and contexts on a
 * GPU: host <-> device round trips in every dtype pair (exact: the same
 * cast rules as the CPU copy), device-to-device casts, fill, tensor
 * read/write, device scratch through ap_ctx_reserve, a device arena, that a
 * loop of ops allocates nothing (cudaMalloc count unchanged), and the
 * refusal of a device the node lacks. Skips (exit 77, with the reason)
 * without a CUDA device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "cuda_backend.h"
#include "ops/elementwise.h"
#include "ops/memory.h"
#include "ops/rows.h"
#include "testutil.h"

#define N 100003 /* odd, spans several blocks */

int main(void) {
    printf("test_cuda_memory: CUDA memory entries, contexts and arenas\n");
    char why[256];
    const int ndev = ap_cuda_device_count(why, sizeof why);
    if (ndev == 0) return tu_skip("no CUDA device (%s)", why);
    ap_ctx cpu, gpu;
    ap_ctx_init(&cpu, 0);
    if (!tu_check(ap_cuda_ctx_init(&gpu, -1, 0) == 0, "cuda context: %s", ap_errmsg()))
        return tu_exit();
    float *x = tu_alloc(N), *back = tu_alloc(N), *want = tu_alloc(N);
    tu_fill_uniform(x, N, 1, -70000, 70000); /* beyond f16's range too */
    ap_tensor hx = ap_t1(x, N), hback = ap_t1(back, N), hwant = ap_t1(want, N);
    static const ap_dtype dts[] = {AP_F32, AP_F16, AP_BF16};
    for (int i = 0; i < 3; i++) {
        void *d = ap_dev_alloc(&gpu, (size_t)N * 4, "round trip");
        ap_tensor td = ap_tensor_of(d, dts[i], AP_CUDA, 1, (int64_t[]){N});
        /* the CPU copy's cast is the reference */
        uint16_t *h16 = malloc((size_t)N * 2);
        ap_tensor th = ap_tensor_of(dts[i] == AP_F32 ? (void *)want : (void *)h16, dts[i], AP_CPU, 1,
                                    (int64_t[]){N});
        ap_copy(&cpu, &th, &hx);
        if (dts[i] != AP_F32) ap_copy(&cpu, &hwant, &th);
        int rc = ap_copy(&gpu, &td, &hx);
        rc |= ap_copy(&gpu, &hback, &td);
        tu_check(rc == 0, "copy host -> %s device -> host f32: %s", ap_dtype_name(dts[i]),
                 rc ? ap_errmsg() : "ok");
        tu_compare(dts[i] == AP_F32 ? "f32 round trip (exact)"
                   : dts[i] == AP_F16 ? "f16 round trip = CPU cast (exact)"
                                      : "bf16 round trip = CPU cast (exact)",
                   back, want, N, 0, 0);
        /* device -> device cast: f32 device -> dtype device -> host */
        void *d2 = ap_dev_alloc(&gpu, (size_t)N * 4, "f32 copy");
        ap_tensor tf = ap_tensor_of(d2, AP_F32, AP_CUDA, 1, (int64_t[]){N});
        rc = ap_copy(&gpu, &tf, &hx) | ap_copy(&gpu, &td, &tf) | ap_copy(&gpu, &tf, &td);
        rc |= ap_tensor_read(&gpu, back, &tf);
        tu_check(rc == 0, "device cast f32 -> %s -> f32", ap_dtype_name(dts[i]));
        tu_compare("device-side cast = CPU cast (exact)", back, want, N, 0, 0);
        ap_dev_free(&gpu, d);
        ap_dev_free(&gpu, d2);
        free(h16);
    }
    /* fill, scratch, arena, no allocation in a loop */
    ap_arena a;
    tu_check(ap_cuda_arena_init(&gpu, &a, (size_t)3 * N * 4, "test arena") == 0, "device arena");
    float *p = ap_arena_floats(&a, N, "p"), *q = ap_arena_floats(&a, N, "q");
    ap_tensor tp = ap_tensor_of(p, AP_F32, AP_CUDA, 1, (int64_t[]){N});
    ap_tensor tq = ap_tensor_of(q, AP_F32, AP_CUDA, 1, (int64_t[]){N});
    tu_check(ap_ctx_reserve(&gpu, 1 << 20) == 0, "device scratch of 1 MiB");
    ap_ctx_fix_scratch(&gpu);
    const long before = ap_cuda_malloc_count();
    int rc = ap_fill(&gpu, &tp, 0.5f) | ap_tensor_write(&gpu, &tq, x);
    for (int i = 0; i < 10; i++) rc |= ap_axpy(&gpu, &tp, 1.0f, &tq);
    rc |= ap_tensor_read(&gpu, back, &tp);
    for (int i = 0; i < N; i++) {
        float s = 0.5f;
        for (int k = 0; k < 10; k++) s = s + x[i];
        want[i] = s;
    }
    tu_check(rc == 0, "fill, write, 10 axpy, read: %s", rc ? ap_errmsg() : "ok");
    tu_compare("fill + 10 axpy (exact: same float ops)", back, want, N, 0, 0);
    tu_check(ap_cuda_malloc_count() == before, "no cudaMalloc inside the loop (%ld -> %ld)", before,
             ap_cuda_malloc_count());
    ap_cuda_arena_free(&gpu, &a);
    /* a device the node lacks is refused by name */
    ap_ctx bad;
    tu_expect_error("device beyond the node's", ap_cuda_ctx_init(&bad, ndev, 0), "device", NULL);
    free(x), free(back), free(want);
    ap_cuda_ctx_free(&gpu);
    ap_ctx_free(&cpu);
    return tu_exit();
}
