/* sample_cmd.c: `alignprop-mpi sample`: text-to-image with a diffusers model
 * directory or a single-file CompVis checkpoint (optionally with a LoRA), or
 * the tiny in-process model. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/err.h"
#include "io/atomic.h"
#include "io/png.h"
#include "pipeline/sd.h"
#include "pipeline/tiny.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: alignprop-mpi sample (--model DIR | --model FILE --tokenizer DIR | --tiny SEED)\n"
            "                            (--prompt TEXT ... | --prompts FILE) [--out DIR] [options]\n"
            "\n"
            "Generates PNG images with DDIM and classifier-free guidance.\n"
            "\n"
            "  --model DIR       diffusers Stable Diffusion directory (model_index.json, unet/,\n"
            "                    vae/, text_encoder/, tokenizer/, scheduler/)\n"
            "  --model FILE      single-file checkpoint in the CompVis layout (.safetensors or\n"
            "                    .ckpt, e.g. v1-5-pruned-emaonly.safetensors): UNet, VAE and\n"
            "                    text encoder; needs --tokenizer\n"
            "  --tokenizer DIR   with --model FILE: folder with vocab.json + merges.txt (e.g. a\n"
            "                    diffusers model's tokenizer/)\n"
            "  --config-dir DIR  with --model FILE: diffusers-layout directory whose unet/, vae/,\n"
            "                    text_encoder/ config.json (and scheduler/) describe the file\n"
            "                    (default: SD v1.5's configs, built in)\n"
            "  --tiny SEED       build a tiny random model from SEED (no download) in OUT/tiny-model\n"
            "  --lora PATH       LoRA weights (AlignProp's pytorch_lora_weights.bin/.safetensors,\n"
            "                    or a directory holding one)\n"
            "  --prompt TEXT     a prompt (repeat for several)\n"
            "  --prompts FILE    one prompt per line\n"
            "  --out DIR         output directory (default: samples)\n"
            "  --steps N         DDIM steps (default 50)\n"
            "  --guidance G      classifier-free guidance scale (default 7.5)\n"
            "  --seed N          noise seed (default 0; image k uses seed + k)\n"
            "  --height N, --width N   image size (default 512, tiny model 64)\n"
            "  --batch N         prompts per batch (default 1)\n"
            "  --threads N       CPU threads (default: $AP_NUM_THREADS, $OMP_NUM_THREADS or all cores)\n"
            "  --help            this help\n");
}

typedef struct {
    double t0;
    int batch, batches;
} progress_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* On a terminal: one line rewritten every step. In a log: a line every 10%. */
static void progress(void *user, int step, int steps) {
    progress_state *p = user;
    double el = now_s() - p->t0;
    int tty = isatty(2);
    if (!tty && step != steps && step % (steps / 10 > 0 ? steps / 10 : 1) != 0) return;
    fprintf(stderr, "%sbatch %d/%d  step %d/%d  %.1fs elapsed, %.1fs left%s", tty ? "\r" : "",
            p->batch, p->batches, step, steps, el, el / step * (steps - step),
            tty && step != steps ? "  " : "\n");
}

static char *read_prompts(const char *path, char ***out, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        ap_fail("%s: cannot open the prompt file", path);
        return NULL;
    }
    char line[4096];
    int cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || isspace((unsigned char)line[l - 1])))
            line[--l] = '\0';
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            *out = realloc(*out, (size_t)cap * sizeof **out);
        }
        (*out)[(*n)++] = strdup(s);
    }
    fclose(f);
    return (char *)path;
}

static void slug(char *dst, size_t cap, const char *prompt) {
    size_t k = 0;
    for (const char *p = prompt; *p && k + 1 < cap && k < 40; p++)
        dst[k++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    dst[k] = '\0';
}

int ap_cmd_sample(int argc, char **argv) {
    ap_atomic_install_signal_cleanup(); /* Ctrl-C leaves no *.png.tmp.* behind */
    static struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"tiny", required_argument, 0, 'T'},
        {"lora", required_argument, 0, 'l'},    {"prompt", required_argument, 0, 'p'},
        {"prompts", required_argument, 0, 'P'}, {"out", required_argument, 0, 'o'},
        {"steps", required_argument, 0, 's'},   {"guidance", required_argument, 0, 'g'},
        {"seed", required_argument, 0, 'S'},    {"height", required_argument, 0, 'H'},
        {"width", required_argument, 0, 'W'},   {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {"tokenizer", required_argument, 0, 'k'}, {"config-dir", required_argument, 0, 'C'},
        {0, 0, 0, 0}};
    const char *model = NULL, *lora = NULL, *out = "samples", *tok = NULL, *cfg_dir = NULL;
    long tiny = -1, steps = 50, seed = 0, height = 0, width = 0, batch = 1, threads = 0;
    double guidance = 7.5;
    char **prompts = NULL;
    int n = 0, cap = 0, c;
    optind = 1;
    int li = -1;
    while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'm': model = optarg; break;
        case 'T': tiny = strtol(optarg, &end, 10); break;
        case 'l': lora = optarg; break;
        case 'k': tok = optarg; break;
        case 'C': cfg_dir = optarg; break;
        case 'o': out = optarg; break;
        case 'p':
            if (n == cap) cap = cap ? 2 * cap : 8, prompts = realloc(prompts, (size_t)cap * sizeof *prompts);
            prompts[n++] = strdup(optarg);
            break;
        case 'P':
            if (!read_prompts(optarg, &prompts, &n)) {
                fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
                return 1;
            }
            cap = n;
            break;
        case 's': steps = strtol(optarg, &end, 10); break;
        case 'g': guidance = strtod(optarg, &end); break;
        case 'S': seed = strtol(optarg, &end, 10); break;
        case 'H': height = strtol(optarg, &end, 10); break;
        case 'W': width = strtol(optarg, &end, 10); break;
        case 'b': batch = strtol(optarg, &end, 10); break;
        case 't': threads = strtol(optarg, &end, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (end && *end) {
            fprintf(stderr, "alignprop-mpi sample: --%s: expected a number, found \"%s\"\n",
                    li >= 0 ? opts[li].name : "?", optarg);
            return 2;
        }
    }
    const char *bad = NULL;
    if (!model == (tiny < 0)) bad = "give exactly one of --model DIR and --tiny SEED";
    else if (n == 0) bad = "give at least one --prompt or a --prompts FILE";
    else if (steps < 1 || steps > 1000) bad = "--steps: expected 1..1000";
    else if (batch < 1) bad = "--batch: expected >= 1";
    else if (threads < 0) bad = "--threads: expected >= 0";
    struct stat st;
    int single = !bad && model && stat(model, &st) == 0 && !S_ISDIR(st.st_mode);
    if (!bad && single && !tok)
        bad = "--model FILE (a single-file checkpoint) needs --tokenizer DIR (vocab.json + merges.txt)";
    else if (!bad && !single && (tok || cfg_dir))
        bad = "--tokenizer and --config-dir go with --model FILE (a single-file checkpoint)";
    if (bad) {
        fprintf(stderr, "alignprop-mpi sample: %s (see --help)\n", bad);
        return 2;
    }
    if (!height) height = tiny >= 0 ? 64 : 512;
    if (!width) width = tiny >= 0 ? 64 : 512;
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "alignprop-mpi sample: %s: cannot create directory: %s\n", out, strerror(errno));
        return 1;
    }
    char tiny_dir[4096];
    if (tiny >= 0) {
        snprintf(tiny_dir, sizeof tiny_dir, "%s/tiny-model", out);
        fprintf(stderr, "writing the tiny model (seed %ld) to %s\n", tiny, tiny_dir);
        if (ap_tiny_write(tiny_dir, (uint64_t)tiny)) {
            fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
            return 1;
        }
        model = tiny_dir;
    }
    ap_ctx ctx;
    ap_ctx_init(&ctx, (int)threads);
    ap_sd sd;
    double t0 = now_s();
    fprintf(stderr, "loading %s%s%s (%d threads)\n", model, lora ? " with LoRA " : "", lora ? lora : "",
            ctx.n_threads);
    if (single ? ap_sd_open_single(&sd, model, tok, cfg_dir, lora) : ap_sd_open(&sd, model, lora)) {
        fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
        ap_ctx_free(&ctx);
        return 1;
    }
    fprintf(stderr, "loaded in %.1fs\n", now_s() - t0);
    int rc = 0;
    size_t img = (size_t)3 * height * width;
    float *images = malloc((size_t)batch * img * sizeof(float));
    progress_state ps = {0, 0, (int)((n + batch - 1) / batch)};
    for (int start = 0; start < n && !rc; start += (int)batch) {
        int m = n - start < batch ? n - start : (int)batch;
        ap_sample_opts o = {.steps = (int)steps, .guidance = (float)guidance,
                            .seed = (uint64_t)(seed + start), .height = (int)height,
                            .width = (int)width};
        ps.t0 = now_s();
        ps.batch = start / (int)batch + 1;
        if (ap_sd_sample(&ctx, &sd, (const char *const *)prompts + start, m, &o, images, progress, &ps)) {
            fprintf(stderr, "\nalignprop-mpi sample: %s\n", ap_errmsg());
            rc = 1;
            break;
        }
        for (int k = 0; k < m; k++) {
            char name[64], path[4096];
            slug(name, sizeof name, prompts[start + k]);
            snprintf(path, sizeof path, "%s/%04d_%s.png", out, start + k, name);
            if (ap_png_write_rgb(path, images + k * img, (int)height, (int)width)) {
                fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
                rc = 1;
                break;
            }
            printf("%s\n", path);
        }
    }
    free(images);
    for (int i = 0; i < n; i++) free(prompts[i]);
    free(prompts);
    ap_sd_close(&sd);
    ap_ctx_free(&ctx);
    return rc;
}
