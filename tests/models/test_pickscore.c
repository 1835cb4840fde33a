/* test_pickscore.c: the PickScore reward (models/pickscore.h) on a tiny
 * transformers 4.30.2 CLIPModel in PickScore_v1's layout
 * (tools/fixtures/pickscore.py): token ids of the prompts (CLIPTokenizer,
 * max_length 77) equal the C tokenizer's; normalised text features; image
 * features; score = exp(logit_scale) * cos and loss = -score;
 * d(sum c_b loss_b)/d(image) against autograd; the inference score equals
 * the tape forward's bit for bit; loader errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "models/pickscore.h"
#include "testutil.h"
#include "text/tokenizer.h"

/* features: fp32 through 2-layer towers and LayerNorms, O(1) values (as
 * test_hps.c). The score is 100 x a cosine: the cosine's ~1e-7 error
 * becomes ~1e-5 abs; rel 1e-4 holds. */
#define F_ATOL 1e-5
#define F_RTOL 1e-4
#define S_ATOL 1e-4
/* image gradient: the HPS path with the 100 x scale on the costs (test_hps.c
 * G_ATOL 1e-6 scaled by 100). */
#define G_ATOL 1e-4
#define G_RTOL 1e-3

static void tiny(ap_ctx *ctx, ap_st_file *f, const char *dir) {
    char mdir[1024], vocab[1024], merges[1024];
    snprintf(mdir, sizeof mdir, "%s/pickscore", dir);
    snprintf(vocab, sizeof vocab, "%s/sd_tiny/tokenizer/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/sd_tiny/tokenizer/merges.txt", dir);
    ap_pickscore m;
    int rc = ap_pickscore_load(&m, mdir);
    if (!tu_check(rc == 0, "load tiny CLIPModel (%s)%s%s", mdir, rc ? ": " : "", rc ? ap_errmsg() : ""))
        return;
    tu_check(m.embed_dim == 16 && m.vis.v.act == AP_ACT_GELU && m.text.t.act == AP_ACT_GELU &&
                 fabs(m.scale - 100.0) < 1e-4,
             "dims from config.json: projection 16, GELU both towers, exp(logit_scale) %.6g (100)",
             (double)m.scale);
    ap_tensor idsf, tref, image, fref, sref, lref, dloss, gref;
    tu_fixture(f, "ps.ids", &idsf);
    tu_fixture(f, "ps.text_features", &tref);
    tu_fixture(f, "ps.image", &image);
    tu_fixture(f, "ps.image_embeds", &fref);
    tu_fixture(f, "ps.score", &sref);
    tu_fixture(f, "ps.loss", &lref);
    tu_fixture(f, "ps.dloss", &dloss);
    tu_fixture(f, "ps.grad_image", &gref);
    int64_t B = idsf.shape[0], N = idsf.shape[1], P = m.embed_dim;
    int64_t H = image.shape[2], W = image.shape[3], S = m.vis.v.image_size;
    int32_t *ids = malloc((size_t)(B * N) * sizeof *ids);
    for (int64_t i = 0; i < B * N; i++) ids[i] = (int32_t)idsf.data[i];
    {
        ap_tokenizer *tok = NULL;
        const char *pr[2] = {"a photo of a cat", "a dog"};
        int32_t mine[77];
        int bad = B != 2 || N != 77 || ap_tokenizer_load_hf(&tok, vocab, merges) != 0;
        for (int64_t b = 0; b < B && !bad; b++) {
            bad |= ap_tokenize(tok, pr[b], mine, 77) != 0;
            for (int j = 0; j < 77 && !bad; j++) bad |= mine[j] != ids[b * N + j];
        }
        tu_check(!bad, "ids of the prompts = transformers CLIPTokenizer's (max_length 77)");
        ap_tokenizer_free(tok);
    }
    /* workspaces: generous arenas (the reward's own plan is measured by
     * ap_reward_plan_measure in the training job) */
    ap_arena tape, tmp;
    ap_arena_init(&tape, (size_t)64 << 20, "pickscore tape");
    ap_arena_init(&tmp, (size_t)64 << 20, "pickscore tmp");
    ap_tensor txt = ap_t2(tu_alloc(B * P), B, P);
    ctx->tmp = &tmp;
    rc = ap_pickscore_encode_text(ctx, &m, &txt, ids, B, N);
    if (tu_check(rc == 0, "text features%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
        tu_compare("normalised text features vs transformers", txt.data, tref.data, B * P, F_ATOL, F_RTOL);
    ap_pickscore_saved sv;
    ap_tensor sc = ap_t1(tu_alloc(B), B), lo = ap_t1(tu_alloc(B), B), dimage = image;
    dimage.data = tu_alloc(ap_numel(&image));
    ap_tape tp = ap_tape_on(&tape);
    rc = ap_pickscore_forward(ctx, &tp, &m, &sv, &sc, &lo, &image, &txt);
    if (tu_check(rc == 0, "forward (%lld x %lld -> %lld)%s%s", (long long)H, (long long)W,
                 (long long)S, rc ? ": " : "", rc ? ap_errmsg() : "")) {
        tu_compare("get_image_features vs transformers", sv.f.data, fref.data, B * P, F_ATOL, F_RTOL);
        tu_compare("score = exp(logit_scale) * cos", sc.data, sref.data, B, S_ATOL, F_RTOL);
        tu_compare("loss = -score", lo.data, lref.data, B, S_ATOL, F_RTOL);
        rc = ap_pickscore_backward(ctx, &tp, &m, &sv, &dimage, &dloss);
        if (tu_check(rc == 0, "backward%s%s", rc ? ": " : "", rc ? ap_errmsg() : ""))
            tu_compare("d(sum c*loss)/d(image) vs autograd", dimage.data, gref.data,
                       ap_numel(&image), G_ATOL, G_RTOL);
        tu_check(tmp.used == 0, "temporaries released");
    }
    ap_tensor s2 = ap_t1(tu_alloc(B), B);
    rc = ap_pickscore_forward(ctx, NULL, &m, NULL, &s2, NULL, &image, &txt);
    tu_check(rc == 0 && memcmp(s2.data, sc.data, (size_t)B * sizeof(float)) == 0,
             "inference score equals the tape forward bit for bit");
    ctx->tmp = NULL;
    ap_arena_free(&tape), ap_arena_free(&tmp);
    free(ids), free(txt.data), free(sc.data), free(lo.data), free(s2.data), free(dimage.data);
    free(idsf.data), free(tref.data), free(image.data), free(fref.data), free(sref.data);
    free(lref.data), free(dloss.data), free(gref.data);
    ap_pickscore_free(&m);
}

static void errors(const char *dir) {
    ap_pickscore m;
    char path[1024];
    snprintf(path, sizeof path, "%s/sd_tiny/text_encoder", dir);
    tu_expect_error("a CLIPTextModel directory (no vision side)", ap_pickscore_load(&m, path),
                    "text_encoder", NULL);
    snprintf(path, sizeof path, "%s/no_such_pickscore", dir);
    tu_expect_error("a missing directory", ap_pickscore_load(&m, path), "no_such_pickscore", NULL);
}

int main(void) {
    printf("test_pickscore: PickScore (transformers CLIPModel) reward vs transformers 4.30.2\n");
    ap_ctx ctx;
    ap_ctx_init(&ctx, 0);
    const char *dir = tu_fixtures_dir();
    if (!dir) return tu_skip("AP_FIXTURES_DIR is not set");
    ap_st_file *f = tu_fixture_open("pickscore");
    if (f) {
        tiny(&ctx, f, dir);
        ap_st_close(f);
    }
    errors(dir);
    ap_ctx_free(&ctx);
    return tu_exit();
}
