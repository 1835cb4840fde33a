/* test_vae.c: the AutoencoderKL decoder (models/vae.h) against diffusers
 * 0.17.1 (tools/fixtures/vae.py):
 *  - a tiny random VAE loaded from its save_pretrained directory decodes a
 *    (2, 4, 6, 10) latent as vae.decode(x / scaling_factor).sample, and its
 *    backward gives autograd's gradient of sum(image * proj) w.r.t. x;
 *  - the same weights under the legacy attention names in a .bin file load
 *    and decode bit-identically; loading warns about nothing (encoder and
 *    quant_conv tensors are known);
 *  - finite differences agree with the backward;
 *  - the real SD v1.5 config declares exactly the decoder + post_quant_conv
 *    subset of the manifest (140 tensors, 49,490,199 parameters);
 *  - bad configs, truncated files, missing and wrong-shape tensors, bad call
 *    arguments give clear errors.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/compvis.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "testutil.h"

static char g_tmpdir[256];

/* ---- helpers ------------------------------------------------------------ */

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* A tensor of the source file written (again) under another name and shape. */
typedef struct {
    const char *src, *name;
    int ndim; /* 0: the stored shape */
    int64_t shape[4];
} st_edit;

/* Copy the F32 tensors of src except `skip` into a new safetensors file at
 * path, then the n edits. */
static int rewrite_st(const char *path, const char *src, const char *skip, const st_edit *ed,
                      int n_ed) {
    ap_st_file *f = NULL;
    if (ap_st_open(&f, src) != 0) return -1;
    int n = ap_st_count(f), first = 1;
    size_t cap = 1 << 20, len = 0, off = 0;
    char *h = malloc(cap);
    const ap_st_tensor **out = calloc((size_t)(n + n_ed), sizeof *out);
    int m = 0;
    len += (size_t)snprintf(h, cap, "{");
    for (int i = 0; i < n + n_ed; i++) {
        const ap_st_tensor *t = i < n ? ap_st_at(f, i) : ap_st_find(f, ed[i - n].src);
        if (!t || (i < n && skip && !strcmp(t->name, skip))) continue;
        const char *name = i < n ? t->name : ed[i - n].name;
        int nd = i < n || !ed[i - n].ndim ? t->ndim : ed[i - n].ndim;
        const int64_t *sh = i < n || !ed[i - n].ndim ? t->shape : ed[i - n].shape;
        len += (size_t)snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                first ? "" : ",", name);
        for (int d = 0; d < nd; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "", (long long)sh[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + t->nbytes);
        off += t->nbytes;
        out[m++] = t;
        first = 0;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    FILE *o = fopen(path, "wb");
    uint64_t hl = len;
    fwrite(&hl, 8, 1, o);
    fwrite(h, 1, len, o);
    for (int i = 0; i < m; i++) fwrite(out[i]->data, 1, out[i]->nbytes, o);
    fclose(o);
    free(out);
    free(h);
    ap_st_close(f);
    return 0;
}

/* A vae/ directory under the temp dir with the tiny config and a weights file. */
static const char *make_dir(const char *name, const char *config_path) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_tmpdir, name);
    mkdir(dir, 0700);
    char dst[600], cmd[1400];
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", config_path, dst);
    if (system(cmd) != 0) printf("  (could not copy %s)\n", config_path);
    return dir;
}

/* Run fn(arg) with stderr going to a file; returns the bytes it printed. */
static long quiet(int (*fn)(void *), void *arg, int *rc) {
    char err[300];
    snprintf(err, sizeof err, "%s/stderr.txt", g_tmpdir);
    fflush(stderr);
    int saved = dup(2), fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    *rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = file_size(err);
    if (n > 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "cat '%s'", err);
        if (system(cmd)) {}
    }
    return n;
}

/* ---- golden decode ------------------------------------------------------ */

typedef struct {
    ap_vae *v;
    const char *dir;
} dir_load;

static int load_dir(void *p) {
    dir_load *d = p;
    return ap_vae_load(d->v, d->dir);
}

typedef struct {
    ap_ctx *ctx;
    ap_vae *v;
    ap_vae_saved *sv;
    ap_tensor latent, image;
    const float *proj;
} loss_state;

static double loss_fn(void *p) {
    loss_state *s = p;
    if (ap_vae_forward(s->ctx, NULL, s->v, s->sv, &s->image, &s->latent) != 0) {
        printf("  forward failed: %s\n", ap_errmsg());
        return 0;
    }
    return tu_dot(s->image.data, s->proj, ap_numel(&s->image));
}

/* Measure (B, h, w) under v->full_tape, make tmp of the measured size
 * (named what), reserve ctx's scratch and point ctx->tmp at tmp. */
static int plan_tmp(ap_ctx *ctx, const ap_vae *v, int64_t B, int64_t h, int64_t w, ap_arena *tmp,
                    const char *what, ap_plan *p) {
    ap_plan q;
    if (!p) p = &q;
    AP_TRY(ap_vae_plan_measure(ctx, v, B, h, w, p));
    AP_TRY(ap_arena_init(tmp, p->tmp_bytes, what));
    AP_TRY(ap_ctx_reserve(ctx, p->scratch_bytes));
    ctx->tmp = tmp;
    return AP_OK;
}

/* Sample b of t as a (1, ...) view. */
static ap_tensor one(const ap_tensor *t, int64_t b) {
    ap_tensor s = *t;
    s.shape[0] = 1;
    s.data = t->data + b * (ap_numel(t) / t->shape[0]);
    return s;
}

/* v->full_tape = 1 (every activation on the tape, no recompute, as before
 * block checkpointing). Run on each image alone it must give bit for bit the
 * image and dlatent of the checkpointed run, which goes one image at a time
 * (same ops in the same order). The batched full tape differs from it only
 * by the ops' reassociation across the batch (the convolutions tile over
 * the whole batch): measured up to 3e-6 on images |x| < 3 and 1e-5 on
 * gradients up to |10|; compared with the golden tolerances (2e-5 + 1e-4
 * rel, 1e-4 + 1e-4 rel). */
static void compare_full_tape(ap_ctx *ctx, ap_vae *v, const ap_tensor *lat, const ap_tensor *dimg,
                              const float *image_ck, const float *dl_ck, const char *what) {
    int64_t B = lat->shape[0], h = lat->shape[2], w = lat->shape[3];
    int64_t ni = ap_numel(dimg), nl = ap_numel(lat);
    float *im = tu_alloc(ni), *dl = tu_alloc(nl);
    ap_tensor image = ap_tn(im, 4, dimg->shape), dlat = ap_tn(dl, 4, lat->shape);
    ap_ctx own; /* the full tape's batched plan takes more scratch than ctx may grow to */
    ap_ctx_init(&own, ctx->n_threads);
    ap_plan cp, fp;
    v->full_tape = 0;
    ap_vae_plan_measure(&own, v, B, h, w, &cp);
    v->full_tape = 1;
    ap_arena tmp, small;
    plan_tmp(&own, v, B, h, w, &tmp, "VAE full-tape tmp (test)", &fp);
    size_t full = fp.tape_bytes;
    ap_vae_saved sv;
    /* full_tape changed after planning: a tape of the checkpointed plan is
     * too small, and the forward fails naming that arena */
    ap_arena_init(&small, cp.tape_bytes, "VAE checkpointed tape (test)");
    ap_tape ts = ap_tape_on(&small);
    tu_check(cp.tape_bytes < full, "%s: checkpointed tape %zu < full tape %zu", what,
             cp.tape_bytes, full);
    tu_expect_error("full_tape changed after planning", ap_vae_forward(&own, &ts, v, &sv, &image, lat),
                    "VAE checkpointed tape (test)", "out of planned space", NULL);
    ap_arena_free(&small);
    ap_arena_reset(&tmp);
    ap_arena tape;
    ap_arena_init(&tape, full, "VAE full tape (test)");
    ap_tape tp = ap_tape_on(&tape);
    int rc = 0;
    for (int64_t b = 0; b < B && rc == 0; b++) {
        ap_tensor im1 = one(&image, b), l1 = one(lat, b), dl1 = one(&dlat, b), di1 = one(dimg, b);
        ap_tape_reset(&tp);
        rc = ap_vae_forward(&own, &tp, v, &sv, &im1, &l1);
        if (rc == 0) rc = ap_vae_backward(&own, &tp, v, &sv, &dl1, &di1);
    }
    tu_check(rc == 0, "%s: full tape, image by image%s%s", what, rc ? ": " : "",
             rc ? ap_errmsg() : "");
    char msg[256];
    snprintf(msg, sizeof msg, "%s: checkpointed image == full tape's (bitwise)", what);
    tu_compare(msg, image_ck, im, ni, 0, 0);
    tu_check(memcmp(image_ck, im, (size_t)ni * sizeof(float)) == 0, "%s: memcmp of images", what);
    snprintf(msg, sizeof msg, "%s: checkpointed dlatent == full tape's (bitwise)", what);
    tu_compare(msg, dl_ck, dl, nl, 0, 0);
    tu_check(memcmp(dl_ck, dl, (size_t)nl * sizeof(float)) == 0, "%s: memcmp of dlatents", what);
    /* the whole batch at once */
    ap_tape_reset(&tp);
    tape.peak = 0;
    rc = ap_vae_forward(&own, &tp, v, &sv, &image, lat);
    tu_check(rc == 0, "%s: full-tape forward%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : "");
    rc = ap_vae_backward(&own, &tp, v, &sv, &dlat, dimg);
    tu_check(tape.peak == full, "%s: full tape: peak %zu == %zu measured", what, tape.peak, full);
    tu_check(rc == 0, "%s: full-tape backward%s%s", what, rc ? ": " : "", rc ? ap_errmsg() : "");
    snprintf(msg, sizeof msg, "%s: checkpointed image vs batched full tape", what);
    tu_compare(msg, image_ck, im, ni, 2e-5, 1e-4);
    snprintf(msg, sizeof msg, "%s: checkpointed dlatent vs batched full tape", what);
    tu_compare(msg, dl_ck, dl, nl, 1e-4, 1e-4);
    v->full_tape = 0;
    ap_ctx_free(&own);
    printf("  %s: tape %zu bytes checkpointed vs %zu full\n", what, cp.tape_bytes, full);
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(im), free(dl);
}

/* Planning at a non-trivial size (B 3, latent 20 x 28) on a context whose
 * scratch cannot grow after the plan: the checkpointed forward + backward
 * stays within the planned tape, tmp and scratch, and a smaller input under
 * the same plan works too; both match the full tape bit for bit. */
static void planning(ap_vae *v, const char *fixdir) {
    (void)fixdir;
    ap_ctx fx;
    ap_ctx_init(&fx, 0);
    ap_plan planned = {0};
    ap_arena tmp = {0};
    ap_vae_saved sv;
    for (int pass = 0; pass < 2; pass++) {
        int64_t B = pass ? 1 : 3, h = pass ? 7 : 20, w = pass ? 9 : 28;
        int64_t s = (int64_t)1 << (v->cfg.n_blocks - 1);
        if (pass == 0) {
            int rc = plan_tmp(&fx, v, B, h, w, &tmp, "VAE tmp (test)", &planned);
            tu_check(rc == 0, "plan (3, 4, 20, 28)%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
            ap_ctx_fix_scratch(&fx);
        }
        ap_plan p;
        ap_vae_plan_measure(&fx, v, B, h, w, &p);
        size_t need = p.tape_bytes;
        ap_arena tape;
        ap_arena_init(&tape, planned.tape_bytes, "VAE tape (test)");
        ap_tape tp = ap_tape_on(&tape);
        ap_tensor lat = ap_t4(tu_alloc(B * 4 * h * w), B, 4, h, w);
        ap_tensor dimg = ap_t4(tu_alloc(B * 3 * h * s * w * s), B, 3, h * s, w * s);
        float *im = tu_alloc(ap_numel(&dimg)), *dl = tu_alloc(ap_numel(&lat));
        ap_tensor image = ap_tn(im, 4, dimg.shape), dlat = ap_tn(dl, 4, lat.shape);
        tu_fill_normal(lat.data, ap_numel(&lat), 11 + pass, 1.0f);
        tu_fill_normal(dimg.data, ap_numel(&dimg), 23 + pass, 1.0f);
        char what[64];
        snprintf(what, sizeof what, "latent (%lld, 4, %lld, %lld)", (long long)B, (long long)h,
                 (long long)w);
        int rc = ap_vae_forward(&fx, &tp, v, &sv, &image, &lat);
        tu_check(rc == 0, "%s: checkpointed forward%s%s", what, rc ? ": " : "",
                 rc ? ap_errmsg() : "");
        rc = ap_vae_backward(&fx, &tp, v, &sv, &dlat, &dimg);
        tu_check(rc == 0, "%s: checkpointed backward%s%s", what, rc ? ": " : "",
                 rc ? ap_errmsg() : "");
        tu_check(tape.peak == need, "%s: tape peak %zu == %zu measured for it", what, tape.peak,
                 need);
        tu_check(tmp.peak <= tmp.cap && fx.scratch_peak <= fx.scratch_cap,
                 "%s: tmp peak %zu <= %zu planned, scratch peak %zu <= %zu planned", what,
                 tmp.peak, tmp.cap, fx.scratch_peak, fx.scratch_cap);
        compare_full_tape(&fx, v, &lat, &dimg, im, dl, what);
        ap_arena_free(&tape);
        free(lat.data), free(dimg.data), free(im), free(dl);
    }
    ap_arena_free(&tmp);
    ap_ctx_free(&fx);
}

/* SD v1.5's decoder planned without weights (unbacked parameters: shapes
 * only): measured bytes of tape + tmp + scratch for 64 x 64 latents
 * (512 x 512 images), full tape vs checkpointed. */
static void sd15_plan(int n_threads) {
    ap_vae_config c;
    ap_vae_config_sd15(&c);
    ap_vae v;
    ap_ctx ctx;
    if (!tu_check(ap_ctx_init(&ctx, n_threads) == 0, "context (%s)", ap_errmsg())) return;
    if (!tu_check(ap_vae_declare(&v, &c) == 0 &&
                      ap_params_alloc_unbacked(&v.params, "SD v1.5 decoder (unbacked)") == 0,
                  "declare SD v1.5 decoder with unbacked weights (%s)", ap_errmsg()))
        return;
    for (int64_t B = 1; B <= 4; B *= 4) {
        size_t t[2], m[2], sc[2];
        for (int ck = 0; ck < 2; ck++) {
            ap_plan p = {0};
            v.full_tape = !ck;
            int rc = ap_vae_plan_measure(&ctx, &v, B, 64, 64, &p);
            tu_check(rc == 0, "measure SD v1.5 decoder B %lld (%s)", (long long)B,
                     rc ? ap_errmsg() : "ok");
            t[ck] = p.tape_bytes, m[ck] = p.tmp_bytes, sc[ck] = p.scratch_bytes;
        }
        printf("  SD v1.5 decoder, B %lld, 64 x 64 latents, %d threads, measured: full tape %.2f GB "
               "+ tmp %.2f GB + scratch %.2f GB = %.2f GB; checkpointed %.2f + %.2f + %.2f = "
               "%.2f GB\n", (long long)B, ctx.n_threads, t[0] / 1e9, m[0] / 1e9, sc[0] / 1e9,
               (t[0] + m[0] + sc[0]) / 1e9, t[1] / 1e9, m[1] / 1e9, sc[1] / 1e9,
               (t[1] + m[1] + sc[1]) / 1e9);
        tu_check(t[1] < t[0] / 3 * 2, "B %lld: checkpointed tape %zu < 2/3 of the full tape %zu",
                 (long long)B, t[1], t[0]);
    }
    v.full_tape = 0;
    ap_vae_free(&v);
    ap_ctx_free(&ctx);
}

static void golden(ap_ctx *ctx, const char *fixdir) {
    ap_st_file *g = tu_fixture_open("vae");
    if (!g) return;
    ap_tensor lat, img, proj, glat;
    tu_fixture(g, "golden.latent", &lat);
    tu_fixture(g, "golden.image", &img);
    tu_fixture(g, "golden.proj", &proj);
    tu_fixture(g, "golden.grad_latent", &glat);
    int64_t B = lat.shape[0], h = lat.shape[2], w = lat.shape[3];

    char dir[4096], err[4096];
    snprintf(dir, sizeof dir, "%s/vae_tiny", fixdir);

    ap_vae v;
    /* loading must not warn: encoder / quant_conv tensors are known-unused */
    dir_load dl_args = {&v, dir};
    int rc;
    long ew = quiet(load_dir, &dl_args, &rc);
    if (!tu_check(rc == 0, "load %s%s%s", dir, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    tu_check(ew == 0, "loading printed no warning (found %ld bytes on stderr)", ew);
    tu_check(v.cfg.n_blocks == 2 && v.cfg.block_out[1] == 16 && v.cfg.layers_per_block == 1 &&
                 v.cfg.groups == 4 && v.cfg.scaling_factor == 0.13025f,
             "config.json read (2 blocks, (8, 16), 1 layer, 4 groups, scaling 0.13025)");
    tu_check(v.params.count == 70 && v.params.total == 26231,
             "tiny decoder: 70 tensors, 26231 parameters (found %d, %zu)", v.params.count,
             v.params.total);

    ap_plan plan;
    ap_arena tmp;
    if (plan_tmp(ctx, &v, B, h, w, &tmp, "VAE tmp (test)", &plan) != 0) {
        tu_check(0, "plan: %s", ap_errmsg());
        return;
    }
    ap_arena tape;
    size_t tape_bytes = plan.tape_bytes;
    ap_arena_init(&tape, tape_bytes, "VAE tape (test)");
    ap_tape tp = ap_tape_on(&tape);
    ap_vae_saved vsv;
    float *out = tu_alloc(ap_numel(&img)), *out2 = tu_alloc(ap_numel(&img)),
          *dl = tu_alloc(ap_numel(&lat));
    ap_tensor image = ap_tn(out, 4, img.shape), image2 = ap_tn(out2, 4, img.shape);
    ap_tensor dlat = ap_tn(dl, 4, lat.shape), dimg = ap_tn(proj.data, 4, img.shape);

    /* Tolerances: fp32 throughout; the reference runs the same ops with a
     * different summation order (its convs, explicit softmax) through 14
     * convolutions and 7 GroupNorms of 2-4 channels per group. Measured max
     * abs error 5.3e-6 on images up to |6| (mean |1.2|): 2e-5 abs + 1e-4 rel
     * leaves margin without hiding a wrong layer (errors of order 1). */
    rc = ap_vae_forward(ctx, NULL, &v, &vsv, &image, &lat);
    tu_check(rc == 0, "forward (inference)%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    tu_compare("decode (2,4,6,10) -> (2,3,12,20) vs diffusers", out, img.data, ap_numel(&img),
               2e-5, 1e-4);
    rc = ap_vae_forward(ctx, &tp, &v, &vsv, &image2, &lat);
    tu_check(rc == 0, "forward (taped)%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    tu_compare("taped forward == inference forward (exact)", out2, out, ap_numel(&img), 0, 0);
    rc = ap_vae_backward(ctx, &tp, &v, &vsv, &dlat, &dimg);
    tu_check(rc == 0, "backward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    /* block checkpointing (the default): the tape's peak is reached when
     * backward recomputes the largest segment */
    tu_check(tape.peak == tape_bytes, "checkpointed tape: peak %zu == %zu measured", tape.peak,
             tape_bytes);
    printf("  tape peak %zu bytes / %zu planned; tmp peak %zu / %zu; scratch %zu\n", tape.peak,
           tape_bytes, tmp.peak, tmp.cap, ctx->scratch_cap);
    /* The gradient passes the same layers in reverse plus the attention
     * backward; gradients up to |9.6| (mean |2|), measured max abs error
     * 7.9e-6: 1e-4 abs + 1e-4 rel. */
    tu_compare("d sum(image * proj) / d latent vs autograd", dl, glat.data, ap_numel(&lat), 1e-4,
               1e-4);

    /* the full tape (no recompute) gives the same bits */
    compare_full_tape(ctx, &v, &lat, &dimg, out2, dl, "fixture (2, 4, 6, 10)");

    planning(&v, fixdir);

    /* finite differences through the inference forward (double loss) */
    float *x = tu_alloc(ap_numel(&lat));
    memcpy(x, lat.data, (size_t)ap_numel(&lat) * sizeof(float));
    loss_state st = {ctx, &v, &vsv, ap_tn(x, 4, lat.shape), image2, proj.data};
    tu_gradcheck("finite differences of sum(image * proj) w.r.t. latent", loss_fn, &st, x,
                 ap_numel(&lat), dl, 1e-2, 2e-3, 12);
    free(x);

    /* thread count does not change the forward beyond reassociation */
    ap_ctx one;
    ap_arena tmp1;
    ap_ctx_init(&one, 1);
    plan_tmp(&one, &v, B, h, w, &tmp1, "VAE tmp, 1 thread (test)", NULL);
    rc = ap_vae_forward(&one, NULL, &v, &vsv, &image2, &lat);
    tu_check(rc == 0, "forward with 1 thread%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
    tu_compare("1 thread vs n threads", out2, out, ap_numel(&img), 1e-6, 1e-5);
    ap_ctx_free(&one);
    ap_arena_free(&tmp1);

    /* legacy attention names in a torch.save'd .bin: identical output */
    snprintf(dir, sizeof dir, "%s/vae_tiny_legacy", fixdir);
    ap_vae lg;
    rc = ap_vae_load(&lg, dir);
    if (tu_check(rc == 0, "load %s (query/key/value/proj_attn, .bin)%s%s", dir, rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        rc = ap_vae_forward(ctx, NULL, &lg, &vsv, &image2, &lat); /* same config: same plan */
        tu_check(rc == 0, "legacy forward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
        tu_compare("legacy-named weights decode == current names (exact)", out2, out,
                   ap_numel(&img), 0, 0);
        tu_compare("legacy-named weights == current names (exact)", lg.params.flat,
                   v.params.flat, (int64_t)v.params.total, 0, 0);
        ap_vae_free(&lg);
    }

    /* legacy names with 1x1-conv shaped weights (16, 16, 1, 1) load as (16, 16) */
    char src[4096], cfg[4096];
    snprintf(src, sizeof src, "%s/vae_tiny/diffusion_pytorch_model.safetensors", fixdir);
    snprintf(cfg, sizeof cfg, "%s/vae_tiny/config.json", fixdir);
    const char *d4 = make_dir("legacy4d", cfg);
    snprintf(err, sizeof err, "%.1000s/diffusion_pytorch_model.safetensors", d4);
    st_edit q4 = {"decoder.mid_block.attentions.0.to_q.weight",
                  "decoder.mid_block.attentions.0.query.weight", 4, {16, 16, 1, 1}};
    rewrite_st(err, src, q4.src, &q4, 1);
    snprintf(dir, sizeof dir, "%.1000s", d4);
    rc = ap_vae_load(&lg, dir);
    if (tu_check(rc == 0, "load query.weight stored as (16, 16, 1, 1)%s%s", rc ? ": " : "",
                 rc ? ap_errmsg() : "")) {
        tu_compare("squeezed legacy weights == current names (exact)", lg.params.flat,
                   v.params.flat, (int64_t)v.params.total, 0, 0);
        ap_vae_free(&lg);
    }

    /* call errors */
    ap_tensor bad = ap_t4(lat.data, B, 3, h, w);
    tu_expect_error("latent with 3 channels", ap_vae_forward(ctx, NULL, &v, &vsv, &image, &bad),
                    "vae_forward", "latent", "(*, 4, *, *)", "(2, 3, 6, 10)", NULL);
    bad = ap_t4(out, B, 3, h * 2, w);
    tu_expect_error("image of the wrong size", ap_vae_forward(ctx, NULL, &v, &vsv, &bad, &lat),
                    "vae_forward", "image", "(2, 3, 12, 20)", "(2, 3, 12, 10)", NULL);
    ap_tensor big = ap_t4(tu_alloc(B * 4 * h * 2 * w), B, 4, h * 2, w);
    ap_tensor bigimg = ap_t4(tu_alloc(B * 3 * h * 4 * w * 2), B, 3, h * 4, w * 2);
    /* a latent larger than planned: tmp, sized for the fixture's latent, refuses */
    tu_expect_error("latent larger than planned",
                    ap_vae_forward(ctx, NULL, &v, &vsv, &bigimg, &big), "VAE tmp (test)",
                    "out of planned space", NULL);
    ap_arena_reset(&tmp);
    free(big.data);
    free(bigimg.data);
    ap_vae_forward(ctx, NULL, &v, &vsv, &image, &lat); /* inference keeps nothing */
    tu_expect_error("backward after an inference forward",
                    ap_vae_backward(ctx, &tp, &v, &vsv, &dlat, &dimg), "vae_backward",
                    "without a tape", NULL);

    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(out), free(out2), free(dl);
    free(lat.data), free(img.data), free(proj.data), free(glat.data);
    ap_vae_free(&v);
    ap_st_close(g);
}

/* ---- single-file CompVis checkpoints -------------------------------------- */

typedef struct {
    ap_vae *v;
    const ap_vae_config *cfg;
    const char *path;
    ap_compvis_layout layout;
} single;

static int load_single(void *p) {
    single *s = p;
    ap_wsrc *w = NULL;
    int rc = ap_compvis_open(&w, s->path, &s->layout);
    if (!rc) rc = ap_vae_declare(s->v, s->cfg);
    if (!rc) rc = ap_vae_alloc(s->v);
    if (!rc) rc = ap_vae_fill(s->v, w, "vae.");
    ap_wsrc_close(w);
    return rc;
}

/* The tiny VAE as first_stage_model.* in a .safetensors and (decoder only,
 * under state_dict.) a .ckpt, with 4-D attention weights and other models'
 * keys beside it: same weights, identical decode, no warning. */
static void single_file(ap_ctx *ctx, const char *fixdir) {
    char dir[4096], path[4096];
    snprintf(dir, sizeof dir, "%s/vae_tiny", fixdir);
    ap_vae ref;
    if (!tu_check(ap_vae_load(&ref, dir) == 0, "load %s: %s", dir, ap_errmsg())) return;
    ap_st_file *g = tu_fixture_open("vae");
    if (!g) return;
    ap_tensor lat, img;
    tu_fixture(g, "golden.latent", &lat);
    tu_fixture(g, "golden.image", &img);
    int64_t B = lat.shape[0], h = lat.shape[2], w = lat.shape[3];
    float *want = tu_alloc(ap_numel(&img)), *got = tu_alloc(ap_numel(&img));
    ap_tensor image = ap_tn(want, 4, img.shape);
    ap_arena tmp;
    ap_vae_saved sv;
    plan_tmp(ctx, &ref, B, h, w, &tmp, "VAE tmp (test)", NULL);
    ap_vae_forward(ctx, NULL, &ref, &sv, &image, &lat);
    const char *files[] = {"vae_tiny_compvis.safetensors", "vae_tiny_compvis.ckpt"};
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof path, "%s/%s", fixdir, files[f]);
        ap_vae v;
        single s = {&v, &ref.cfg, path, {0, 0}};
        int rc;
        long warn = quiet(load_single, &s, &rc);
        if (!tu_check(rc == 0, "load the VAE from %s%s%s", path, rc ? ": " : "",
                      rc ? ap_errmsg() : ""))
            continue;
        tu_check(warn == 0, "%s: no warning (UNet / text / schedule keys belong to no VAE "
                 "slot; found %ld bytes on stderr)", files[f], warn);
        tu_check(s.layout.vae_blocks == 2, "%s: 2 VAE blocks read off the keys (found %d)",
                 files[f], s.layout.vae_blocks);
        tu_compare("CompVis-layout weights == diffusers-layout weights (exact)", v.params.flat,
                   ref.params.flat, (int64_t)ref.params.total, 0, 0);
        image.data = got;
        rc = ap_vae_forward(ctx, NULL, &v, &sv, &image, &lat); /* same config: same plan */
        tu_check(rc == 0, "forward%s%s", rc ? ": " : "", rc ? ap_errmsg() : "");
        tu_compare("single-file decode == vae_tiny decode (exact)", got, want, ap_numel(&img), 0,
                   0);
        ap_vae_free(&v);
    }
    free(want), free(got), free(lat.data), free(img.data);
    ctx->tmp = NULL;
    ap_arena_free(&tmp);
    ap_vae_free(&ref);
    ap_st_close(g);
}

/* ---- real-size manifest ------------------------------------------------- */

static void manifest(const char *fixdir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/manifests/sd15_vae_config.json", fixdir);
    ap_vae_config c, sd;
    int rc = ap_vae_config_load(&c, path);
    if (!tu_check(rc == 0, "read %s%s%s", path, rc ? ": " : "", rc ? ap_errmsg() : "")) return;
    ap_vae_config_sd15(&sd);
    tu_check(!memcmp(&c, &sd, sizeof c), "SD v1.5 config.json == ap_vae_config_sd15()");
    ap_vae v;
    if (!tu_check(ap_vae_declare(&v, &c) == 0, "declare SD v1.5 decoder")) return;
    snprintf(path, sizeof path, "%s/manifests/sd15_vae.txt", fixdir);
    FILE *f = fopen(path, "r");
    if (!tu_check(f != NULL, "open %s", path)) return;
    char line[1024], name[512], dtype[32], dims[128];
    int i = 0, mism = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (sscanf(line, "%511s %31s %127s", name, dtype, dims) != 3) continue;
        if (strncmp(name, "decoder.", 8) && strncmp(name, "post_quant_conv.", 16)) continue;
        char want[160] = "(";
        for (char *t = strtok(dims, ","); t; t = strtok(NULL, ","))
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s",
                     want[1] ? ", " : "", t);
        strcat(want, ")");
        char got[160] = "(missing)";
        const char *gname = i < v.params.count ? v.params.items[i].name : "(none)";
        if (i < v.params.count) ap_shape_str(&v.params.items[i].t, got, sizeof got);
        if (strcmp(gname, name) || strcmp(got, want)) {
            if (mism++ < 5)
                printf("  slot %d: declared %s %s, manifest %s %s\n", i, gname, got, name, want);
        }
        i++;
    }
    fclose(f);
    tu_check(mism == 0 && i == v.params.count && i == 140,
             "declared names/shapes/order == manifest decoder + post_quant_conv subset "
             "(%d tensors in the manifest, %d declared, %d mismatches)", i, v.params.count, mism);
    tu_check(v.params.total == 49490199, "parameters: %zu (manifest subset 49,490,199)",
             v.params.total);
    tu_check(v.params.flat == NULL, "declaring allocates nothing");
    ap_params_free(&v.params);
}

/* ---- bad input ---------------------------------------------------------- */

static void bad_input(const char *fixdir) {
    char cfg[4096], st[4096], path[4096];
    snprintf(cfg, sizeof cfg, "%s/vae_tiny/config.json", fixdir);
    snprintf(st, sizeof st, "%s/vae_tiny/diffusion_pytorch_model.safetensors", fixdir);
    ap_vae v;

    /* configs */
    struct {
        const char *what, *json, *needle;
    } cases[] = {
        {"unsupported up block", "{\"block_out_channels\":[8,16],\"layers_per_block\":1,"
         "\"latent_channels\":4,\"norm_num_groups\":4,\"out_channels\":3,"
         "\"up_block_types\":[\"UpDecoderBlock2D\",\"AttnUpDecoderBlock2D\"]}",
         "\"up_block_types\": entry 1: unsupported block AttnUpDecoderBlock2D"},
        {"missing layers_per_block", "{\"block_out_channels\":[8,16],\"latent_channels\":4,"
         "\"norm_num_groups\":4,\"out_channels\":3,"
         "\"up_block_types\":[\"UpDecoderBlock2D\",\"UpDecoderBlock2D\"]}",
         "\"layers_per_block\": expected a number, found nothing"},
        {"groups not dividing", "{\"block_out_channels\":[8,12],\"layers_per_block\":1,"
         "\"latent_channels\":4,\"norm_num_groups\":8,\"out_channels\":3,"
         "\"up_block_types\":[\"UpDecoderBlock2D\",\"UpDecoderBlock2D\"]}",
         "\"norm_num_groups\": 8 does not divide block_out_channels entry 1 (12)"},
        {"act_fn", "{\"act_fn\":\"gelu\",\"block_out_channels\":[8]}", "\"act_fn\": unsupported "
         "value \"gelu\""},
        {"block count mismatch", "{\"block_out_channels\":[8,16],\"layers_per_block\":1,"
         "\"latent_channels\":4,\"norm_num_groups\":4,\"out_channels\":3,"
         "\"up_block_types\":[\"UpDecoderBlock2D\"]}", "\"up_block_types\": expected 2 entries"},
        {"class", "{\"_class_name\":\"VQModel\"}", "\"_class_name\": unsupported value \"VQModel\""},
        {"fractional layers", "{\"block_out_channels\":[8],\"layers_per_block\":1.5,"
         "\"up_block_types\":[\"UpDecoderBlock2D\"]}", "\"layers_per_block\": expected an integer"},
    };
    snprintf(path, sizeof path, "%s/config.json", g_tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ap_vae_config c;
        write_text(path, cases[i].json);
        tu_expect_error(cases[i].what, ap_vae_config_load(&c, path), path, cases[i].needle, NULL);
    }
    ap_vae_config c;
    write_text(path, "{\"block_out_channels\":[8,16],\"layers_per_block\":1,"
               "\"latent_channels\":4,\"norm_num_groups\":4,\"out_channels\":3,"
               "\"up_block_types\":[\"UpDecoderBlock2D\",\"UpDecoderBlock2D\"]}");
    int rc = ap_vae_config_load(&c, path);
    tu_check(rc == 0 && c.scaling_factor == 0.18215f,
             "scaling_factor absent -> 0.18215 (diffusers' default)");

    /* no weights file */
    const char *dir = make_dir("empty", cfg);
    tu_expect_error("directory without weights", ap_vae_load(&v, dir), dir,
                    "diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin", NULL);

    /* truncated safetensors */
    dir = make_dir("truncated", cfg);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "head -c %ld '%s' > '%s'", file_size(st) - 100, st, path);
    if (system(cmd)) {}
    tu_expect_error("truncated safetensors", ap_vae_load(&v, dir), path, "truncated", NULL);

    /* a decoder tensor missing */
    dir = make_dir("missing", cfg);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    rewrite_st(path, st, "decoder.up_blocks.1.resnets.0.conv2.bias", NULL, 0);
    tu_expect_error("missing tensor", ap_vae_load(&v, dir), "VAE decoder", path,
                    "1 missing tensor", "decoder.up_blocks.1.resnets.0.conv2.bias (8)", NULL);

    /* a decoder tensor of the wrong shape (same element count) */
    dir = make_dir("shape", cfg);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    st_edit reshape = {"decoder.conv_in.weight", "decoder.conv_in.weight", 4, {8, 8, 3, 3}};
    rewrite_st(path, st, "decoder.conv_in.weight", &reshape, 1);
    tu_expect_error("wrong shape", ap_vae_load(&v, dir), path, "1 wrong shape",
                    "decoder.conv_in.weight expected (16, 4, 3, 3), found (8, 8, 3, 3)", NULL);

    /* a legacy and a current name for one tensor: ambiguous */
    dir = make_dir("both", cfg);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    st_edit alias = {"decoder.mid_block.attentions.0.to_q.bias",
                     "decoder.mid_block.attentions.0.query.bias", 0, {0}};
    rewrite_st(path, st, NULL, &alias, 1);
    tu_expect_error("a legacy and a current name in one file", ap_vae_load(&v, dir), path,
                    "decoder.mid_block.attentions.0.query.bias",
                    "decoder.mid_block.attentions.0.to_q.bias", "both map to", NULL);

    /* a current-name attention weight stored as a 1x1 conv is a wrong shape
     * (only renamed legacy / CompVis names may be squeezed) */
    dir = make_dir("conv4d", cfg);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    st_edit four = {"decoder.mid_block.attentions.0.to_k.weight",
                    "decoder.mid_block.attentions.0.to_k.weight", 4, {16, 16, 1, 1}};
    rewrite_st(path, st, four.src, &four, 1);
    tu_expect_error("to_k.weight as (16, 16, 1, 1)", ap_vae_load(&v, dir), path,
                    "to_k.weight expected (16, 16), found (16, 16, 1, 1)", NULL);
}

int main(void) {
    printf("test_vae: AutoencoderKL decoder vs diffusers 0.17.1\n");
    const char *fixdir = tu_fixtures_dir();
    if (!fixdir) return tu_skip("AP_FIXTURES_DIR not set (run through meson test)");
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/test_vae.XXXXXX");
    if (!mkdtemp(g_tmpdir)) return tu_skip("cannot create a temp dir");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    golden(&ctx, fixdir);
    sd15_plan(ctx.n_threads);
    single_file(&ctx, fixdir);
    manifest(fixdir);
    bad_input(fixdir);
    ap_ctx_free(&ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd)) {}
    return tu_exit();
}
