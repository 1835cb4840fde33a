/* test_unet.c: UNet2DConditionModel + AlignProp LoRA against diffusers 0.17.1.
 *
 * 1. Goldens (tools/fixtures/unet.py): tiny random UNets saved with
 *    save_pretrained (config.json + safetensors) and save_attn_procs
 *    (pytorch_lora_weights.bin); eps = unet(x, t, context) and the autograd
 *    gradients of sum(eps * proj) w.r.t. x and every LoRA matrix. Inference
 *    (no tape) must give the taped forward's eps bit for bit.
 * 2. Manifests: the SD v1.5 config builds exactly the 686 tensors of
 *    sd15_unet.txt (names, shapes, order; 859,520,964 parameters) and, with
 *    rank 4, the 256 LoRA tensors of sd15_unet_lora_r4.txt (797,184), without
 *    allocating anything; the same for SD 2.1 (sd21_unet.txt: per-block
 *    heads, linear projections; 865,910,724 parameters; LoRA 829,952), with
 *    a dry-run plan at 768x768.
 * 3. LoRA: a "unet."-prefixed safetensors copy loads the .bin's values; our
 *    initialisation has A std 1/r, B = 0, and leaves eps bit-identical to the
 *    model without LoRA.
 * 4. Bad input: missing / wrong-shape tensors, bad config values, wrong LoRA
 *    rank, bad latent sizes give errors naming file, key, expected and found.
 * 5. Tape ownership (core/tape.h): backward refuses a tape reset after the
 *    forward (stale), another tape (foreign) and saved descriptors of another
 *    model; two calls in flight on two tapes give each call's eps and dx alone
 *    bit for bit (the model holds nothing per call).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/st_write.h"
#include "models/unet.h"
#include "testutil.h"

/* fp32 against fp32 through ~40 layers (tiny: 8 resnets, 5 transformers,
 * GroupNorms over 2-4 channels x 16-64 positions). Both sides round every op
 * to fp32, but in different summation orders (blocked GEMMs, our two-pass
 * norms in double vs torch's Welford, online-softmax attention vs explicit
 * softmax); each op contributes ~1e-7 relative and the GroupNorms over small
 * groups amplify by 1/std. Measured max errors are ~2e-6 on O(1) values;
 * 2e-5 absolute + 1e-3 relative leaves a 10x margin while a wrong layer or
 * skip order gives O(1) errors. LoRA gradients sum over B*N rows: same. */
#define ATOL 2e-5
#define RTOL 1e-3

static char g_tmpdir[256];

static void golden_case(ap_ctx *ctx, const char *name) {
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/%s", tu_fixtures_dir(), name);
    printf(" case %s\n", name);
    ap_unet m;
    int rc = ap_unet_open(&m, dir, 2);
    if (!tu_check(rc == 0, "open %s (config, build, weights)%s%s", dir, rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    rc = ap_unet_load_lora(&m, dir);
    tu_check(rc == 0, "LoRA from pytorch_lora_weights.bin%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    ap_st_file *f = NULL;
    if (!tu_check(ap_st_open(&f, path) == 0, "open %s", path)) return;
    ap_tensor x, t, cx, proj, eps_ref, gx_ref;
    tu_fixture(f, "x", &x);
    tu_fixture(f, "timesteps", &t);
    tu_fixture(f, "context", &cx);
    tu_fixture(f, "proj", &proj);
    tu_fixture(f, "eps", &eps_ref);
    tu_fixture(f, "grad_x", &gx_ref);
    int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3], L = cx.shape[1];
    printf("  B %lld, latent %lldx%lld, context %lld, %d steps, %d resnets, %d transformers, "
           "%zu weights, %zu LoRA floats\n", (long long)B, (long long)H, (long long)W,
           (long long)L, m.n_steps, m.n_res, m.n_tf, m.params.total, m.lora.total);

    ap_unet_plan plan;
    ap_arena tape, tmp;
    rc = ap_unet_plan_measure(ctx, &m, B, H, W, L, &plan);
    ap_arena_init(&tape, plan.tape_bytes, "UNet tape");
    ap_arena_init(&tmp, plan.tmp_bytes, "UNet tmp");
    ap_ctx_reserve(ctx, plan.scratch_bytes);
    ctx->tmp = &tmp;
    ap_tape tp = ap_tape_on(&tape);
    ap_unet_saved sv;
    ap_unet_saved_init(&sv, &m);
    ap_tensor eps = eps_ref, dx = x;
    eps.data = tu_alloc(ap_numel(&eps));
    dx.data = tu_alloc(ap_numel(&x));
    rc = ap_unet_forward(ctx, &tp, &m, &sv, &eps, &x, &t, &cx);
    if (tu_check(rc == 0, "forward with tape%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        tu_compare("eps vs diffusers", eps.data, eps_ref.data, ap_numel(&eps), ATOL, RTOL);
        ap_unet_zero_lora_grads(&m);
        rc = ap_unet_backward(ctx, &tp, &m, &sv, &dx, &proj);
        if (tu_check(rc == 0, "backward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
            tu_compare("grad x vs autograd", dx.data, gx_ref.data, ap_numel(&x), ATOL, RTOL);
            double worst = 0;
            int bad = 0;
            for (int k = 0; k < m.lora.count; k++) {
                char key[512];
                ap_tensor g;
                snprintf(key, sizeof key, "grad.%s", m.lora.items[k].name);
                tu_fixture(f, key, &g);
                const float *got = m.lora_grad + m.lora.items[k].offset;
                int64_t n = ap_numel(&g);
                for (int64_t i = 0; i < n; i++) {
                    double e = (got[i] - g.data[i]) / (ATOL + RTOL * (g.data[i] < 0 ? -g.data[i] : g.data[i]));
                    if (e < 0) e = -e;
                    if (e > worst) worst = e;
                }
                if (!(worst <= 1.0) && !bad++)
                    tu_compare(key, got, g.data, n, ATOL, RTOL);
                free(g.data);
            }
            tu_check(worst <= 1.0, "%d LoRA gradients vs autograd: max err / tolerance %.3g "
                     "(atol %g, rtol %g)", m.lora.count, worst, ATOL, RTOL);
        }
        printf("  tape %zu of %zu planned bytes, tmp peak %zu of %zu\n", tape.peak, tape.cap,
               tmp.peak, tmp.cap);
    }
    /* inference: same eps bit for bit, tmp released */
    ap_tensor eps2 = eps;
    eps2.data = tu_alloc(ap_numel(&eps));
    size_t before = tmp.used;
    rc = ap_unet_forward(ctx, NULL, &m, &sv, &eps2, &x, &t, &cx);
    if (tu_check(rc == 0, "inference forward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        tu_check(!memcmp(eps2.data, eps.data, ap_numel(&eps) * sizeof(float)),
                 "inference eps equals the taped eps bit for bit");
        tu_check(tmp.used == before, "inference released tmp (%zu -> %zu)", before, tmp.used);
    }
    /* backward after an inference forward is refused */
    tu_expect_error("backward after inference", ap_unet_backward(ctx, &tp, &m, &sv, &dx, &proj),
                    "without a tape", NULL);
    /* wrong latent size */
    ap_tensor xb = ap_t4(x.data, B, x.shape[1], H - 1, W);
    tu_expect_error("odd latent", ap_unet_forward(ctx, NULL, &m, &sv, &eps2, &xb, &t, &cx),
                    "unet_forward", "multiples of", NULL);
    free(eps.data), free(eps2.data), free(dx.data);
    free(x.data), free(t.data), free(cx.data), free(proj.data), free(eps_ref.data), free(gx_ref.data);
    ap_unet_saved_free(&sv);
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    ap_st_close(f);
    ap_unet_free(&m);
}

/* Compare a declared list with a manifest file (key dtype shape per line). */
static void manifest(const ap_params *p, const char *file, size_t want_total) {
    char path[4096], line[1024];
    snprintf(path, sizeof path, "%s/manifests/%s", tu_fixtures_dir(), file);
    FILE *fp = fopen(path, "r");
    if (!tu_check(fp != NULL, "open %s", path)) return;
    int k = 0, mism = 0;
    while (fgets(line, sizeof line, fp)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char key[512], dt[32], shp[128], ours[128] = "";
        if (sscanf(line, "%511s %31s %127s", key, dt, shp) != 3) continue;
        if (k < p->count) {
            const ap_tensor *t = &p->items[k].t;
            int o = 0;
            for (int d = 0; d < t->ndim; d++)
                o += snprintf(ours + o, sizeof ours - o, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        }
        if (k >= p->count || strcmp(key, p->items[k].name) || strcmp(shp, ours)) {
            if (mism++ < 5)
                printf("  mismatch at %d: manifest %s %s, ours %s %s\n", k, key, shp,
                       k < p->count ? p->items[k].name : "(none)", ours);
        }
        k++;
    }
    fclose(fp);
    tu_check(mism == 0 && k == p->count, "%s: %d tensors in order with equal names and shapes "
             "(ours %d, %d mismatches)", file, k, p->count, mism);
    tu_check(p->total == want_total, "%s: %zu parameters (expected %zu)", file, p->total, want_total);
}

static void manifests(void) {
    printf(" SD v1.5 manifests\n");
    char path[4096];
    snprintf(path, sizeof path, "%s/manifests/sd15_unet_config.json", tu_fixtures_dir());
    ap_unet_config c;
    ap_unet m;
    int rc = ap_unet_config_read(&c, path);
    if (!tu_check(rc == 0, "read %s%s%s", path, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    rc = ap_unet_build(&m, &c, 4);
    if (!tu_check(rc == 0, "build SD v1.5 with LoRA rank 4 (no allocation)%s%s", rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    tu_check(m.params.flat == NULL && m.lora.flat == NULL, "nothing allocated");
    manifest(&m.params, "sd15_unet.txt", 859520964);
    manifest(&m.lora, "sd15_unet_lora_r4.txt", 797184);
    tu_check(m.n_res == 22 && m.n_tf == 16 && m.n_skips == 12,
             "22 resnets, 16 transformers, 12 skips (found %d, %d, %d)", m.n_res, m.n_tf, m.n_skips);
    /* plans measured with unbacked weights (shapes only): one row, and one
     * chain UNet call (a sample's two CFG rows) */
    ap_ctx ctx;
    rc = ap_ctx_init(&ctx, 2);
    if (!rc) rc = ap_unet_alloc_unbacked(&m);
    for (int64_t B = 1; B <= 2 && !rc; B++) {
        ap_unet_plan p;
        rc = ap_unet_plan_measure(&ctx, &m, B, 64, 64, 77, &p);
        if (tu_check(rc == 0, "measure SD v1.5 with unbacked weights, B %lld (%s)", (long long)B,
                     rc ? ap_errmsg() : "ok"))
            printf("  measured plan for B=%lld, 64x64, L=77, 2 threads: tape %.1f MB, tmp %.1f MB, "
                   "scratch %.1f MB\n", (long long)B, p.tape_bytes / 1e6, p.tmp_bytes / 1e6,
                   p.scratch_bytes / 1e6);
    }
    ap_ctx_free(&ctx);
    ap_unet_free(&m);
}

/* Stable Diffusion 2.1 (docs/unet.md §12): per-block head counts, linear
 * projections, cross_attention_dim 1024, at real size without weights. */
static void manifests_sd21(void) {
    printf(" SD 2.1 manifests\n");
    char path[4096];
    snprintf(path, sizeof path, "%s/manifests/sd21_unet_config.json", tu_fixtures_dir());
    ap_unet_config c;
    ap_unet m;
    int rc = ap_unet_config_read(&c, path);
    if (!tu_check(rc == 0, "read %s%s%s", path, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_check(c.linear_proj == 1 && c.cross_dim == 1024 && c.heads[0] == 5 && c.heads[1] == 10 &&
                 c.heads[2] == 20 && c.heads[3] == 20,
             "SD 2.1 config: use_linear_projection, cross_attention_dim 1024, heads [5, 10, 20, 20]");
    rc = ap_unet_build(&m, &c, 4);
    if (!tu_check(rc == 0, "build SD 2.1 with LoRA rank 4 (no allocation)%s%s", rc ? ": " : "",
                  rc ? ap_errmsg() : ""))
        return;
    manifest(&m.params, "sd21_unet.txt", 865910724);
    manifest(&m.lora, "sd21_unet_lora_r4.txt", 829952);
    ap_ctx ctx;
    rc = ap_ctx_init(&ctx, 2);
    if (!rc) rc = ap_unet_alloc_unbacked(&m);
    ap_unet_plan p;
    if (!rc) rc = ap_unet_plan_measure(&ctx, &m, 2, 96, 96, 77, &p);
    if (tu_check(rc == 0, "measure SD 2.1 at 768x768 (96x96 latents) with unbacked weights, B 2 "
                          "(%s)", rc ? ap_errmsg() : "ok"))
        printf("  measured plan for B=2, 96x96, L=77, 2 threads: tape %.1f MB, tmp %.1f MB, "
               "scratch %.1f MB\n", p.tape_bytes / 1e6, p.tmp_bytes / 1e6, p.scratch_bytes / 1e6);
    ap_ctx_free(&ctx);
    ap_unet_free(&m);
}

/* Write dir/config.json = the tiny config with one key's value replaced, and
 * link the weights next to it. */
static void variant(const char *sub, const char *key, const char *value, char *dir, size_t n) {
    char src[4096], buf[8192], out[8192];
    snprintf(dir, n, "%s/%s", g_tmpdir, sub);
    snprintf(src, sizeof src, "mkdir -p '%s'", dir);
    if (system(src) != 0) abort();
    snprintf(src, sizeof src, "%s/unet_tiny/config.json", tu_fixtures_dir());
    FILE *fp = fopen(src, "r");
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = 0;
    char needle[128];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    char *at = strstr(buf, needle);
    if (!at) abort();
    char *end = at + strlen(needle);
    /* value ends at the next ",\n" or "\n}" at top level (values here are scalars or lists) */
    int depth = 0;
    while (*end && !(depth == 0 && (*end == ',' || *end == '\n') && end > at + strlen(needle) + 1)) {
        if (*end == '[') depth++;
        if (*end == ']') depth--;
        end++;
    }
    snprintf(out, sizeof out, "%.*s %s%s", (int)(at + strlen(needle) - buf), buf, value, end);
    snprintf(src, sizeof src, "%s/config.json", dir);
    fp = fopen(src, "w");
    fputs(out, fp);
    fclose(fp);
    snprintf(buf, sizeof buf, "%s/unet_tiny/diffusion_pytorch_model.safetensors", tu_fixtures_dir());
    if (!realpath(buf, src)) abort();
    snprintf(buf, sizeof buf, "%s/diffusion_pytorch_model.safetensors", dir);
    unlink(buf);
    if (symlink(src, buf) != 0) abort();
}

static void bad_inputs(void) {
    printf(" bad input\n");
    char dir[4096];
    ap_unet m;
    variant("lpb3", "layers_per_block", "3", dir, sizeof dir);
    tu_expect_error("missing tensor (layers_per_block 3 vs a 2-layer file)",
                    ap_unet_open(&m, dir, 0), "diffusion_pytorch_model.safetensors",
                    "missing", "down_blocks.0.attentions.2.norm.weight (8)", NULL);
    variant("cross8", "cross_attention_dim", "8", dir, sizeof dir);
    tu_expect_error("wrong shape (cross_attention_dim 8 vs 16 in the file)",
                    ap_unet_open(&m, dir, 0), "diffusion_pytorch_model.safetensors",
                    "attn2.to_k.weight", "(16, 8)", "(16, 16)", NULL);
    variant("act", "act_fn", "\"gelu\"", dir, sizeof dir);
    tu_expect_error("act_fn gelu", ap_unet_open(&m, dir, 0), "config.json", "act_fn", "gelu",
                    "silu", NULL);
    variant("heads", "attention_head_dim", "[2, 2, 2]", dir, sizeof dir);
    tu_expect_error("attention_head_dim list of 3 for 2 blocks", ap_unet_open(&m, dir, 0),
                    "config.json", "attention_head_dim", "2 entries", "3", NULL);
    variant("heads3", "attention_head_dim", "3", dir, sizeof dir);
    tu_expect_error("3 heads for 8 channels", ap_unet_open(&m, dir, 0), "config.json",
                    "attention_head_dim", "3", "8", NULL);
    variant("down", "down_block_types", "[\"AttnDownBlock2D\", \"DownBlock2D\"]", dir, sizeof dir);
    tu_expect_error("down block type", ap_unet_open(&m, dir, 0), "config.json",
                    "down_block_types[0]", "AttnDownBlock2D", "CrossAttnDownBlock2D", NULL);
    variant("shift", "resnet_time_scale_shift", "\"scale_shift\"", dir, sizeof dir);
    tu_expect_error("resnet_time_scale_shift", ap_unet_open(&m, dir, 0), "config.json",
                    "resnet_time_scale_shift", "scale_shift", "default", NULL);
    variant("class", "class_embed_type", "\"timestep\"", dir, sizeof dir);
    tu_expect_error("class_embed_type", ap_unet_open(&m, dir, 0), "config.json",
                    "class_embed_type", "timestep", "null", NULL);
    /* LoRA file of rank 2 into a rank-4 model */
    char tiny[4096];
    snprintf(tiny, sizeof tiny, "%s/unet_tiny", tu_fixtures_dir());
    if (tu_check(ap_unet_open(&m, tiny, 4) == 0, "open unet_tiny with rank 4")) {
        tu_expect_error("rank-2 LoRA file into a rank-4 model", ap_unet_load_lora(&m, tiny),
                        "pytorch_lora_weights.bin", "rank 4", "to_q_lora.down.weight",
                        "(4, 8)", "(2, 8)", NULL);
        ap_unet_free(&m);
    }
    /* no LoRA file in a directory */
    if (tu_check(ap_unet_open(&m, tiny, 2) == 0, "open unet_tiny with rank 2")) {
        char empty[4096];
        snprintf(empty, sizeof empty, "%s/act", g_tmpdir); /* config + weights, no LoRA */
        tu_expect_error("directory without LoRA", ap_unet_load_lora(&m, empty),
                        "pytorch_lora_weights.safetensors", "found none", NULL);
        ap_unet_free(&m);
    }
}

/* LoRA: save_attn_procs names with a "unet." prefix in safetensors load the
 * same values as the .bin; AlignProp's init (A ~ N(0, 1/r), B = 0) leaves the
 * model's output exactly that of the model without LoRA. */
static void lora_io(ap_ctx *ctx) {
    printf(" LoRA formats and initialisation\n");
    char tiny[2048], path[4096];
    snprintf(tiny, sizeof tiny, "%s/unet_tiny", tu_fixtures_dir());
    ap_unet a, b, base;
    if (!tu_check(ap_unet_open(&a, tiny, 2) == 0 && ap_unet_load_lora(&a, tiny) == 0,
                  "open unet_tiny + LoRA .bin"))
        return;
    int n = a.lora.count;
    ap_st_entry *e = calloc((size_t)n, sizeof *e);
    char **names = calloc((size_t)n, sizeof *names);
    for (int k = 0; k < n; k++) {
        names[k] = malloc(strlen(a.lora.items[k].name) + 8);
        sprintf(names[k], "unet.%s", a.lora.items[k].name);
        e[k].name = names[k];
        e[k].t = &a.lora.items[k].t;
    }
    snprintf(path, sizeof path, "%s/pytorch_lora_weights.safetensors", g_tmpdir);
    const char *meta[] = {"format", "pt", NULL};
    int rc = ap_st_write(path, e, n, meta);
    tu_check(rc == 0, "write unet.-prefixed LoRA safetensors%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    if (tu_check(ap_unet_open(&b, tiny, 2) == 0, "open a second model")) {
        rc = ap_unet_load_lora(&b, g_tmpdir);
        tu_check(rc == 0, "load it from the directory (prefix stripped)%s%s", rc ? ": " : "",
                 rc ? ap_errmsg() : "");
        tu_check(!memcmp(a.lora.flat, b.lora.flat, a.lora.total * sizeof(float)),
                 "%zu LoRA floats equal to the .bin's", a.lora.total);
        /* initialisation */
        ap_unet_init_lora(&b, 42);
        double s2 = 0, na = 0;
        int zero_b = 1;
        for (int k = 0; k < b.lora.count; k++) {
            const float *v = b.lora.flat + b.lora.items[k].offset;
            int64_t m = ap_numel(&b.lora.items[k].t);
            for (int64_t i = 0; i < m; i++) {
                if (k % 2) zero_b &= v[i] == 0.0f;
                else s2 += (double)v[i] * v[i], na++;
            }
        }
        double sd = sqrt(s2 / na);
        /* ~1000 values: standard error of the std ~0.011, 0.05 is > 4 sigma (seed fixed) */
        tu_check(fabs(sd - 0.5) < 0.05 && zero_b, "init: A std %.4f (expected 1/r = 0.5 over %.0f "
                 "values), every B zero: %s", sd, na, zero_b ? "yes" : "no");
        if (tu_check(ap_unet_open(&base, tiny, 0) == 0, "open without LoRA")) {
            ap_st_file *f = NULL;
            snprintf(path, sizeof path, "%s/golden.safetensors", tiny);
            ap_st_open(&f, path);
            ap_tensor x, t, cx, e1, e2;
            tu_fixture(f, "x", &x), tu_fixture(f, "timesteps", &t), tu_fixture(f, "context", &cx);
            tu_fixture(f, "eps", &e1), tu_fixture(f, "eps", &e2);
            ap_unet_plan p;
            ap_unet_plan_measure(ctx, &b, x.shape[0], x.shape[2], x.shape[3], cx.shape[1], &p);
            ap_arena tmp;
            ap_arena_init(&tmp, p.tmp_bytes, "tmp");
            ctx->tmp = &tmp;
            ap_unet_saved sb, sbase;
            ap_unet_saved_init(&sb, &b);
            ap_unet_saved_init(&sbase, &base);
            rc = ap_unet_forward(ctx, NULL, &b, &sb, &e1, &x, &t, &cx) ||
                 ap_unet_forward(ctx, NULL, &base, &sbase, &e2, &x, &t, &cx);
            tu_check(rc == 0 && !memcmp(e1.data, e2.data, ap_numel(&e1) * sizeof(float)),
                     "freshly initialised LoRA (B = 0) leaves eps bit-identical to no LoRA");
            ap_unet_saved_free(&sb), ap_unet_saved_free(&sbase);
            ctx->tmp = NULL;
            ap_arena_free(&tmp);
            free(x.data), free(t.data), free(cx.data), free(e1.data), free(e2.data);
            ap_st_close(f);
            ap_unet_free(&base);
        }
        ap_unet_free(&b);
    }
    for (int k = 0; k < n; k++) free(names[k]);
    free(names), free(e);
    ap_unet_free(&a);
}

/* Tape ownership (core/tape.h): backward accepts only the saved activations a
 * forward of the same model recorded on the same tape in its current epoch;
 * the model keeps nothing per call, so two calls in flight on two tapes give
 * what each gives alone. */
static void tape_ownership(ap_ctx *ctx) {
    printf(" tape ownership\n");
    char tiny[2048], path[4096];
    snprintf(tiny, sizeof tiny, "%s/unet_tiny", tu_fixtures_dir());
    ap_unet m, m2;
    if (!tu_check(ap_unet_open(&m, tiny, 2) == 0 && ap_unet_load_lora(&m, tiny) == 0,
                  "open unet_tiny + LoRA"))
        return;
    if (!tu_check(ap_unet_open(&m2, tiny, 2) == 0, "open a second model from the same config")) {
        ap_unet_free(&m);
        return;
    }
    snprintf(path, sizeof path, "%s/golden.safetensors", tiny);
    ap_st_file *f = NULL;
    if (!tu_check(ap_st_open(&f, path) == 0, "open %s", path)) {
        ap_unet_free(&m), ap_unet_free(&m2);
        return;
    }
    ap_tensor x, t, cx, proj;
    tu_fixture(f, "x", &x), tu_fixture(f, "timesteps", &t), tu_fixture(f, "context", &cx);
    tu_fixture(f, "proj", &proj);
    int64_t B = x.shape[0], H = x.shape[2], W = x.shape[3], L = cx.shape[1], nx = ap_numel(&x);
    ap_tensor x2 = x; /* a second input: -x */
    x2.data = tu_alloc(nx);
    for (int64_t i = 0; i < nx; i++) x2.data[i] = -x.data[i];
    ap_unet_plan p;
    int rc = ap_unet_plan_measure(ctx, &m, B, H, W, L, &p);
    if (!tu_check(rc == 0, "measure%s%s", rc ? ": " : "", rc ? ap_errmsg() : "")) {
        free(x.data), free(x2.data), free(t.data), free(cx.data), free(proj.data);
        ap_st_close(f);
        ap_unet_free(&m), ap_unet_free(&m2);
        return;
    }
    ap_arena ta1, ta2, tmp;
    ap_arena_init(&ta1, p.tape_bytes, "tape one");
    ap_arena_init(&ta2, p.tape_bytes, "tape two");
    ap_arena_init(&tmp, p.tmp_bytes, "UNet tmp");
    ap_ctx_reserve(ctx, p.scratch_bytes);
    ctx->tmp = &tmp;
    ap_tape t1 = ap_tape_on(&ta1), t2 = ap_tape_on(&ta2);
    ap_unet_saved s1, s2;
    ap_unet_saved_init(&s1, &m), ap_unet_saved_init(&s2, &m);
    ap_tensor eps = proj, dx = x;
    eps.data = tu_alloc(ap_numel(&proj));
    dx.data = tu_alloc(nx);

    /* (a) stale: the tape was reset after the forward */
    rc = ap_unet_forward(ctx, &t1, &m, &s1, &eps, &x, &t, &cx);
    tu_check(rc == 0, "forward on tape one%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    ap_tape_reset(&t1);
    tu_expect_error("backward after ap_tape_reset", ap_unet_backward(ctx, &t1, &m, &s1, &dx, &proj),
                    "unet_backward", "stale tape", NULL);
    /* (b) foreign tape: recorded on tape one, backward given tape two */
    rc = ap_unet_forward(ctx, &t1, &m, &s1, &eps, &x, &t, &cx);
    tu_check(rc == 0, "forward on tape one again%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    tu_expect_error("backward on another tape", ap_unet_backward(ctx, &t2, &m, &s1, &dx, &proj),
                    "unet_backward", "foreign tape", NULL);
    /* (c) saved descriptors recorded by another model of the same config */
    tu_expect_error("backward of another model", ap_unet_backward(ctx, &t1, &m2, &s1, &dx, &proj),
                    "unet_backward", "another model", NULL);
    ap_tape_reset(&t1);

    /* (d) alone: forward + backward of x, then of x2 */
    ap_tensor eps_a = eps, eps_b = eps, dx_a = dx, dx_b = dx, eps1 = eps, eps2 = eps, dx1 = dx,
              dx2 = dx;
    eps_a.data = tu_alloc(ap_numel(&eps)), eps_b.data = tu_alloc(ap_numel(&eps));
    dx_a.data = tu_alloc(nx), dx_b.data = tu_alloc(nx);
    eps1.data = tu_alloc(ap_numel(&eps)), eps2.data = tu_alloc(ap_numel(&eps));
    dx1.data = tu_alloc(nx), dx2.data = tu_alloc(nx);
    rc = ap_unet_forward(ctx, &t1, &m, &s1, &eps_a, &x, &t, &cx);
    if (!rc) rc = ap_unet_backward(ctx, &t1, &m, &s1, &dx_a, &proj);
    ap_tape_reset(&t1);
    if (!rc) rc = ap_unet_forward(ctx, &t1, &m, &s1, &eps_b, &x2, &t, &cx);
    if (!rc) rc = ap_unet_backward(ctx, &t1, &m, &s1, &dx_b, &proj);
    ap_tape_reset(&t1);
    tu_check(rc == 0, "one forward + backward each, alone%s%s", rc ? ": " : "",
             rc ? ap_errmsg() : "");
    /* both in flight: two forwards on two tapes, then the backwards in reverse order */
    rc = ap_unet_forward(ctx, &t1, &m, &s1, &eps1, &x, &t, &cx);
    if (!rc) rc = ap_unet_forward(ctx, &t2, &m, &s2, &eps2, &x2, &t, &cx);
    if (!rc) rc = ap_unet_backward(ctx, &t2, &m, &s2, &dx2, &proj);
    if (!rc) rc = ap_unet_backward(ctx, &t1, &m, &s1, &dx1, &proj);
    if (tu_check(rc == 0, "two forwards on two tapes, then both backwards%s%s", rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        size_t ne = (size_t)ap_numel(&eps) * sizeof(float), nd = (size_t)nx * sizeof(float);
        tu_check(!memcmp(eps1.data, eps_a.data, ne) && !memcmp(eps2.data, eps_b.data, ne),
                 "eps of both calls in flight equal eps alone bit for bit");
        tu_check(!memcmp(dx1.data, dx_a.data, nd) && !memcmp(dx2.data, dx_b.data, nd),
                 "dx of both calls in flight equal dx alone bit for bit");
        tu_check(memcmp(dx1.data, dx2.data, nd) != 0, "the two calls' dx differ (x vs -x)");
    }
    free(eps_a.data), free(eps_b.data), free(dx_a.data), free(dx_b.data);
    free(eps1.data), free(eps2.data), free(dx1.data), free(dx2.data);
    free(eps.data), free(dx.data);
    ap_unet_saved_free(&s1), ap_unet_saved_free(&s2);
    ctx->tmp = NULL;
    ap_arena_free(&ta1), ap_arena_free(&ta2), ap_arena_free(&tmp);
    free(x.data), free(x2.data), free(t.data), free(cx.data), free(proj.data);
    ap_st_close(f);
    ap_unet_free(&m), ap_unet_free(&m2);
}

int main(void) {
    printf("test_unet: UNet2DConditionModel + LoRA vs diffusers 0.17.1\n");
    if (!tu_fixtures_dir()) return tu_skip("AP_FIXTURES_DIR is not set");
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/test_unet_XXXXXX");
    if (!mkdtemp(g_tmpdir)) return tu_skip("cannot create a temporary directory");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    golden_case(&ctx, "unet_tiny");
    golden_case(&ctx, "unet_tiny_linear");
    manifests();
    manifests_sd21();
    lora_io(&ctx);
    tape_ownership(&ctx);
    bad_inputs();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", g_tmpdir);
    ap_ctx_free(&ctx);
    return tu_exit();
}
