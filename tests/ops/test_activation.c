/* test_activation.c: gradchecks, PyTorch goldens and shape errors of the
 * pointwise activations. */
#include <stdio.h>

#include "ops/activation.h"
#include "testutil.h"

typedef struct {
    ap_ctx *ctx;
    ap_tensor in, out;
    const float *proj;
} silu_case;

static double silu_loss(void *p) {
    silu_case *c = p;
    ap_silu_forward(c->ctx, &c->out, &c->in);
    return tu_dot(c->out.data, c->proj, ap_numel(&c->out));
}

static void test_silu_gradcheck(ap_ctx *ctx) {
    int64_t n0 = 3, n1 = 7, n = n0 * n1;
    float *x = tu_alloc(n), *y = tu_alloc(n), *proj = tu_alloc(n), *dx = tu_alloc(n);
    tu_fill_uniform(x, n, 1, -4, 4);
    tu_fill_uniform(proj, n, 2, -1, 1);
    silu_case c = {ctx, ap_t2(x, n0, n1), ap_t2(y, n0, n1), proj};
    ap_tensor tdx = ap_t2(dx, n0, n1), tdy = ap_t2(proj, n0, n1);
    tu_check(ap_silu_backward(ctx, &tdx, &tdy, &c.in) == 0, "silu_backward runs");
    /* fp32 forward, double loss: eps 1e-2 keeps truncation error ~1e-4. */
    tu_gradcheck("silu din (3x7)", silu_loss, &c, x, n, dx, 1e-2, 2e-3, 64);
}

static void test_silu_shapes(ap_ctx *ctx) {
    float buf[12];
    ap_tensor a = ap_t2(buf, 3, 4), b = ap_t2(buf, 4, 3);
    tu_expect_error("silu_forward with out (4, 3) for in (3, 4)",
                    ap_silu_forward(ctx, &b, &a), "silu_forward", "(3, 4)", "(4, 3)",
                    NULL);
}

int main(void) {
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    printf("test_activation: silu\n");
    test_silu_gradcheck(&ctx);
    test_silu_shapes(&ctx);
    ap_ctx_free(&ctx);
    return tu_exit();
}
