/* sample_cmd.c: `alignprop-mpi sample`: text-to-image with a diffusers model
 * directory or a single-file CompVis checkpoint (optionally with a LoRA), or
 * the tiny in-process model. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/err.h"
#include "ops/select.h"
#include "io/atomic.h"
#include "core/path.h"
#include "io/png.h"
#include "io/weights.h"
#include "pipeline/sd.h"
#include "pipeline/tiny.h"
#include "text/prompts.h"
#include "train/dist.h"

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
            "                    or a directory holding one) in the diffusers-attn-procs, peft\n"
            "                    or kohya layout (docs/lora.md)\n"
            "  --prompt TEXT     a prompt (repeat for several)\n"
            "  --prompts FILE    one prompt per line (UTF-8 text, at most 16 MiB; blank lines skipped)\n"
            "  --out DIR         output directory (default: samples)\n"
            "  --steps N         DDIM steps, 1..1000 (default 50)\n"
            "  --guidance G      classifier-free guidance scale, 0..1000 (default 7.5)\n"
            "  --seed N          noise seed (default 0; image k uses seed + k, whatever --batch,\n"
            "                    --threads or the number of MPI ranks)\n"
            "  --height N, --width N   image size, 8..8192, multiples of the model factor (SD: 64)\n"
            "                    (default: the model's, unet sample_size x VAE factor as in\n"
            "                    diffusers: SD v1.5 512, SD 2.1 768; tiny model 64)\n"
            "  --batch N         prompts per batch, 1..256 (default 1)\n"
            "  --threads N       CPU threads, 0..1024 (0 or default: $AP_NUM_THREADS, $OMP_NUM_THREADS or all cores)\n"
            "  --precision P     fp32 (default), bf16 or fp16: the dtype the frozen UNet and VAE\n"
            "                    weights are stored in (widened to fp32 as they are used: about\n"
            "                    half the weight memory; the images differ slightly from fp32's)\n"
            "  --backend B       cpu (default) or cuda: one GPU per MPI rank, the node-local\n"
            "                    rank's (refused naming why when the build or machine has none)\n"
            "  --help            this help\n"
            "\n"
            "Under mpirun, image k is sampled on rank k mod the number of ranks.\n"
            "Exit status: 0 done, 1 a file or sampling failed, 2 bad options.\n");
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

static void slug(char *dst, size_t cap, const char *prompt) {
    size_t k = 0;
    for (const char *p = prompt; *p && k + 1 < cap && k < 40; p++)
        dst[k++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    dst[k] = '\0';
}

/* Integer option value: the whole word a decimal integer in [lo, hi]. */
static int opt_int(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || isspace((unsigned char)*v) || *end || errno == ERANGE || x < lo || x > hi)
        return ap_fail("--%s: expected an integer in %lld..%lld, found \"%s\"", opt, lo, hi, v);
    *out = x;
    return AP_OK;
}

/* $AP_NUM_THREADS, when set, is a thread count (ap_ctx_init would ignore
 * any other value silently). */
static int bad_env_threads(void) {
    const char *v = getenv("AP_NUM_THREADS");
    if (!v || !*v) return 0;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end || errno == ERANGE || x < 1 || x > 4095)
        return ap_fail("AP_NUM_THREADS (environment): expected an integer in 1..4095, found \"%s\"", v), 1;
    return 0;
}

/* Real option value: the whole word a finite number in [lo, hi]. */
static int opt_real(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || isspace((unsigned char)*v) || *end || !isfinite(x) || x < lo || x > hi)
        return ap_fail("--%s: expected a finite number in %g..%g, found \"%s\"", opt, lo, hi, v);
    *out = x;
    return AP_OK;
}

/* OUT exists or is created, is a directory, and takes a file (written and
 * removed now, so an unwritable OUT is found before any work). */
static int check_out_dir(const char *out) {
    if (!*out) return ap_fail("--out: expected a directory name, found \"\"");
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return ap_fail("--out %s: cannot create the directory: %s", out, strerror(errno));
    if (!ap_is_dir(out))
        return ap_fail("--out %s: exists and is not a directory; expected a directory (or a new "
                       "name)", out);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.alignprop-write-test-%ld", out, (long)getpid());
    FILE *f = fopen(probe, "wb");
    int ok = f && fputc('x', f) != EOF;
    if (f && fclose(f) != 0) ok = 0;
    int err = errno;
    if (f) remove(probe);
    if (!ok)
        return ap_fail("--out %s: cannot write a file in the directory: %s; expected a writable "
                       "directory", out, strerror(err));
    return AP_OK;
}

/* The paths the options name exist with the right kind, before any loading. */
static int check_paths(const char *model, int single, const char *tok, const char *cfg_dir,
                       const char *lora) {
    if (model && !ap_path_exists(model))
        return ap_fail("--model %s: %s; expected a diffusers directory or a single-file "
                       "checkpoint", model, strerror(errno));
    if (model && !single && !ap_is_dir(model))
        return ap_fail("--model %s: not a regular file or directory", model);
    if (tok) {
        if (!ap_is_dir(tok))
            return ap_fail("--tokenizer %s: not a directory; expected a folder with vocab.json "
                           "and merges.txt", tok);
        const char *need[] = {"vocab.json", "merges.txt"};
        for (int i = 0; i < 2; i++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", tok, need[i]);
            if (!ap_is_file(p) || access(p, R_OK) != 0)
                return ap_fail("--tokenizer %s: %s: missing or unreadable; expected vocab.json "
                               "and merges.txt in the folder", tok, p);
        }
    }
    if (cfg_dir && !ap_is_dir(cfg_dir))
        return ap_fail("--config-dir %s: not a directory; expected a diffusers-layout directory "
                       "(unet/, vae/, text_encoder/ config.json)", cfg_dir);
    if (lora && !ap_path_exists(lora))
        return ap_fail("--lora %s: %s; expected pytorch_lora_weights.bin/.safetensors or a "
                       "directory holding one", lora, strerror(errno));
    if (lora) {
        int rank = 0;
        if (ap_sd_lora_rank(lora, &rank)) return ap_err_prefix("--lora %s: ", lora);
    }
    return AP_OK;
}

static int add_prompt(char ***prompts, int *n, const char *p) {
    long bad = ap_text_check(p, (long)strlen(p));
    if (bad >= 0)
        return ap_fail("--prompt: invalid UTF-8 byte 0x%02x at byte %ld of \"%.40s\"; expected "
                       "UTF-8 text", (unsigned char)p[bad], bad + 1, p);
    char **a = realloc(*prompts, ((size_t)*n + 1) * sizeof *a);
    if (!a) return ap_fail("--prompt: out of memory");
    *prompts = a;
    if (!(a[*n] = strdup(p))) return ap_fail("--prompt: out of memory");
    (*n)++;
    return AP_OK;
}

#define SEED_MAX (1LL << 62)

/* Under mpirun (Open MPI's OMPI_COMM_WORLD_SIZE, MPICH/Slurm PMI_SIZE or
 * PMIX_RANK set) image k is sampled on rank k mod world; a plain run
 * initializes no MPI. */
typedef struct {
    ap_dist d;
    int on; /* MPI initialized by us */
} dist_state;

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* Combine a phase's result over the ranks: returns this rank's rc, or 1
 * when only another rank failed. The message (ap_errmsg) is printed by the
 * lowest failing rank only (prefixed with its rank when there are several). */
static int sync_phase(dist_state *ds, int rc, const char *hint) {
    int lowest = rc ? 0 : -1, world = 1, rank = 0;
    if (ds->on) {
        world = ds->d.world, rank = ds->d.rank;
        int *all = malloc(sizeof(int) * (size_t)world);
        if (!all || ap_dist_allgather_int(&ds->d, rc, all)) {
            free(all);
            fprintf(stderr, "alignprop-mpi sample: rank %d: %s\n", rank, ap_errmsg());
            return rc ? rc : 1;
        }
        lowest = -1;
        for (int r = 0; r < world && lowest < 0; r++)
            if (all[r]) lowest = r;
        free(all);
    }
    if (lowest < 0) return 0;
    if (lowest == rank && rc) {
        if (world > 1) fprintf(stderr, "alignprop-mpi sample: rank %d: %s%s\n", rank, ap_errmsg(), hint);
        else fprintf(stderr, "alignprop-mpi sample: %s%s\n", ap_errmsg(), hint);
    }
    return rc ? rc : 1;
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
        {"precision", required_argument, 0, 'r'}, {"backend", required_argument, 0, 'B'},
        {0, 0, 0, 0}};
    const char *model = NULL, *lora = NULL, *out = "samples", *tok = NULL, *cfg_dir = NULL;
    long long tiny = -1, steps = 50, seed = 0, height = 0, width = 0, batch = 1, threads = 0;
    double guidance = 7.5;
    ap_dtype precision = AP_F32;
    const char *backend = "cpu";
    char **prompts = NULL;
    float *images = NULL;
    const char **bp = NULL;
    uint64_t *seeds = NULL;
    int *idx = NULL;
    int n = 0, c, rc = 0, sd_open = 0, ctx_open = 0, help = 0, single = 0;
    ap_ctx ctx;
    ap_sd sd;
    dist_state ds = {0};
    if (launched_by_mpirun()) {
        if (ap_dist_init(&ds.d, &argc, &argv)) {
            fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
            return 1;
        }
        ds.on = 1;
    }
    const int rank = ds.on ? ds.d.rank : 0, world = ds.on ? ds.d.world : 1;

    /* ---- phase 1: options, files they name, the output directory */
    optind = 1;
    opterr = 0;
    int li = -1;
    while (!rc && !help && (c = getopt_long(argc, argv, ":h", opts, &li)) != -1) {
        const char *name = li >= 0 ? opts[li].name : "?";
        switch (c) {
        case 'm': model = optarg; break;
        case 'T': rc = opt_int(name, optarg, 0, SEED_MAX, &tiny); break;
        case 'l': lora = optarg; break;
        case 'k': tok = optarg; break;
        case 'C': cfg_dir = optarg; break;
        case 'o': out = optarg; break;
        case 'p': rc = add_prompt(&prompts, &n, optarg); break;
        case 'P':
            rc = ap_prompts_read(optarg, &prompts, &n);
            if (rc) ap_err_prefix("--prompts: ");
            break;
        case 's': rc = opt_int(name, optarg, 1, 1000, &steps); break;
        case 'g': rc = opt_real(name, optarg, 0, 1000, &guidance); break;
        case 'S': rc = opt_int(name, optarg, 0, SEED_MAX, &seed); break;
        case 'H': rc = opt_int(name, optarg, 8, 8192, &height); break;
        case 'W': rc = opt_int(name, optarg, 8, 8192, &width); break;
        case 'b': rc = opt_int(name, optarg, 1, 256, &batch); break;
        case 't': rc = opt_int(name, optarg, 0, 1024, &threads); break;
        case 'r':
            rc = ap_weights_precision_parse(optarg, &precision);
            if (rc) ap_err_prefix("--");
            break;
        case 'B':
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                rc = ap_fail("--backend: expected cpu or cuda, found \"%s\"", optarg);
            backend = optarg;
            break;
        case 'h': help = 1; break;
        case ':': rc = ap_fail("%s: expected a value after it", argv[optind - 1]); break;
        default: rc = ap_fail("unknown option \"%s\"", argv[optind - 1]); break;
        }
        li = -1;
    }
    if (!rc && !help) {
        if (optind < argc)
            rc = ap_fail("unexpected argument \"%.200s\" (prompts go after --prompt, quoted)",
                         argv[optind]);
        else if (!model == (tiny < 0)) rc = ap_fail("give exactly one of --model DIR and --tiny SEED");
        else if (n == 0) rc = ap_fail("give at least one --prompt or a --prompts FILE");
        else if (seed > SEED_MAX - n) rc = ap_fail("--seed %lld: seed + number of prompts exceeds 2^62", seed);
        else if (!threads && bad_env_threads()) rc = AP_ERR;
        single = !rc && model && ap_is_file(model);
        if (!rc && single && !tok)
            rc = ap_fail("--model FILE (a single-file checkpoint) needs --tokenizer DIR (vocab.json "
                         "+ merges.txt)");
        else if (!rc && !single && (tok || cfg_dir))
            rc = ap_fail("--tokenizer and --config-dir go with --model FILE (a single-file "
                         "checkpoint)");
    }
    int usage_err = rc != 0;
    if (!rc && !help && (check_paths(model, single, tok, cfg_dir, lora) || check_out_dir(out)))
        rc = AP_ERR;
    if (!rc && !help && ap_backend_check(backend)) rc = AP_ERR; /* before any work */
    if (rc) rc = 2;
    rc = sync_phase(&ds, rc, usage_err ? " (see --help)" : "");
    if (rc) goto done;
    if (help) {
        if (rank == 0) usage(stdout);
        goto done;
    }
    if (!height && tiny >= 0) height = 64; /* else the model's size, once it is loaded */
    if (!width && tiny >= 0) width = 64;

    /* ---- phase 2: the tiny model (written by rank 0) */
    char tiny_dir[4200];
    if (tiny >= 0) {
        snprintf(tiny_dir, sizeof tiny_dir, "%s/tiny-model", out);
        if (rank == 0) {
            fprintf(stderr, "writing the tiny model (seed %lld) to %s\n", tiny, tiny_dir);
            rc = ap_tiny_write(tiny_dir, (uint64_t)tiny) ? 1 : 0;
        }
        if ((rc = sync_phase(&ds, rc, ""))) goto done;
        model = tiny_dir;
    }

    /* ---- phase 3: load; image size and steps against the model */
    if (ap_backend_ctx_init(&ctx, backend, (int)threads, 0)) {
        fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
        rc = 2;
        goto done;
    }
    ctx_open = 1;
    if (ctx.device == AP_CPU) ap_ctx_pin_threads(&ctx);
    double t0 = now_s();
    if (rank == 0)
        fprintf(stderr, "loading %s%s%s (%d threads%s)\n", model, lora ? " with LoRA " : "",
                lora ? lora : "", ctx.n_threads, world > 1 ? " per rank" : "");
    ap_weights_set_frozen_dtype(precision); /* after phase 2: tiny.c writes f32 weights */
    if (single ? ap_sd_open_single(&sd, model, tok, cfg_dir, lora) : ap_sd_open(&sd, model, lora)) {
        rc = 1;
    } else if (ap_sd_place(&ctx, &sd)) { /* every weight on the device (docs/cuda.md §6) */
        sd_open = 1;
        rc = 1;
    } else {
        sd_open = 1;
        int lh, lw;
        if (!height) height = ap_sd_default_size(&sd);
        if (!width) width = ap_sd_default_size(&sd);
        ap_ddim probe;
        if (ap_sd_latent_size(&sd, (int)height, (int)width, &lh, &lw)) {
            ap_err_prefix("--height %lld, --width %lld: ", height, width);
            rc = 2;
        } else if (ap_ddim_init(&probe, &sd.sched, (int)steps)) {
            ap_err_prefix("--steps %lld: ", steps);
            rc = 2;
        }
    }
    if ((rc = sync_phase(&ds, rc, ""))) goto done;
    if (rank == 0)
        fprintf(stderr, "loaded in %.1fs; %d image%s%s\n", now_s() - t0, n, n == 1 ? "" : "s",
                world > 1 ? ", image k on rank k mod world" : "");

    /* ---- phase 4: this rank's images (k = rank, rank + world, ...) */
    int mine = n > rank ? (n - rank + world - 1) / world : 0;
    int per = batch < mine ? (int)batch : (mine > 0 ? mine : 1);
    size_t img = (size_t)3 * (size_t)height * (size_t)width;
    images = ap_malloc((size_t)per * img * sizeof(float), "images");
    bp = malloc((size_t)per * sizeof *bp);
    seeds = malloc((size_t)per * sizeof *seeds);
    idx = malloc((size_t)per * sizeof *idx);
    if (!images || !bp || !seeds || !idx) {
        fprintf(stderr, "alignprop-mpi sample: out of memory for a batch of %d images of %lldx%lld\n",
                per, height, width);
        rc = 1;
    }
    progress_state ps = {0, 0, (mine + per - 1) / per};
    for (int j0 = 0; j0 < mine && !rc; j0 += per) {
        int m = mine - j0 < per ? mine - j0 : per;
        for (int j = 0; j < m; j++) {
            idx[j] = rank + (j0 + j) * world;
            bp[j] = prompts[idx[j]];
            seeds[j] = (uint64_t)seed + (uint64_t)idx[j];
        }
        ap_sample_opts o = {.steps = (int)steps, .guidance = (float)guidance,
                            .seed = (uint64_t)seed, .seeds = seeds, .height = (int)height,
                            .width = (int)width};
        ps.t0 = now_s();
        ps.batch = j0 / per + 1;
        if (ap_sd_sample(&ctx, &sd, bp, m, &o, images, rank == 0 ? progress : NULL, &ps)) {
            char who[32] = "";
            if (world > 1) snprintf(who, sizeof who, "rank %d: ", rank);
            fprintf(stderr, "\nalignprop-mpi sample: %sprompt %d (\"%.60s\"): %s\n", who,
                    idx[0] + 1, bp[0], ap_errmsg());
            rc = 1;
            break;
        }
        for (int k = 0; k < m; k++) {
            char name[64], path[4200];
            slug(name, sizeof name, bp[k]);
            snprintf(path, sizeof path, "%s/%04d_%s.png", out, idx[k], name);
            if (ap_png_write_rgb(path, images + (size_t)k * img, (int)height, (int)width)) {
                fprintf(stderr, "alignprop-mpi sample: %s\n", ap_errmsg());
                rc = 1;
                break;
            }
            printf("%s\n", path);
        }
    }
    if (ds.on) { /* one exit status on every rank (messages were printed where they arose) */
        int any = 0;
        if (ap_dist_any(&ds.d, rc != 0, &any) == 0 && any && !rc) rc = 1;
    }
done:
    free(bp), free(seeds), free(idx);
    free(images);
    ap_prompts_free(prompts, n);
    if (sd_open) ap_sd_unplace(&ctx, &sd), ap_sd_close(&sd);
    if (ctx_open) ap_backend_ctx_free(&ctx);
    if (ds.on) ap_dist_finalize(&ds.d);
    return rc;
}
