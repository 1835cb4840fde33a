/* lora_cmd.c: `alignprop-mpi lora convert IN OUT --to LAYOUT`: a UNet LoRA
 * rewritten in another key layout (io/lora_file.h, docs/lora.md §7). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/err.h"
#include "core/path.h"
#include "io/lora_file.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: alignprop-mpi lora convert IN OUT --to LAYOUT\n"
            "\n"
            "Rewrites a UNet LoRA (to_q/to_k/to_v/to_out.0 of every attention) in another\n"
            "key layout, as safetensors (float32, written atomically).\n"
            "\n"
            "  IN          a LoRA file (.safetensors or a torch .bin/.pth) in any of the\n"
            "              layouts below, or a directory holding pytorch_lora_weights.\n"
            "              safetensors / .bin (a checkpoint_<N>/ of a run)\n"
            "  OUT         the file to write; an existing directory, or a name ending in '/',\n"
            "              gets OUT/pytorch_lora_weights.safetensors\n"
            "  --to LAYOUT diffusers-attn-procs  diffusers 0.17.1 save_attn_procs names,\n"
            "                          <attn>.processor.to_q_lora.down.weight (load_attn_procs)\n"
            "              peft        current diffusers save_lora_weights names,\n"
            "                          unet.<attn>.to_q.lora_A.weight (load_lora_weights)\n"
            "              kohya       lora_unet_<attn>_to_q.lora_down.weight / .lora_up.weight /\n"
            "                          .alpha (A1111, ComfyUI; alpha = rank)\n"
            "  --help      this help\n"
            "\n"
            "A kohya alpha other than the rank is folded into the up matrices (scale alpha /\n"
            "rank), so every output means W' = W + up * down. See docs/lora.md.\n");
}

static int convert(const char *in, const char *out, ap_lora_layout to) {
    char file[4200];
    size_t n = strlen(out);
    if (ap_is_dir(out) || (n && out[n - 1] == '/')) {
        if (!ap_is_dir(out) && ap_mkdirs(out))
            return ap_err_prefix("output directory %s: ", out);
        snprintf(file, sizeof file, "%s%spytorch_lora_weights.safetensors", out,
                 n && out[n - 1] == '/' ? "" : "/");
    } else {
        snprintf(file, sizeof file, "%s", out);
    }
    ap_lora_set s;
    AP_TRY(ap_lora_read(&s, in));
    int rc = ap_lora_write(&s.p, to, file);
    if (!rc)
        printf("%s (%s, %d matrices, rank %d%s) -> %s (%s)\n", s.file,
               ap_lora_layout_name(s.layout), s.p.count, s.rank,
               s.alphas_not_rank ? ", alpha folded into up" : "", file, ap_lora_layout_name(to));
    ap_lora_set_free(&s);
    return rc;
}

int ap_cmd_lora(int argc, char **argv) {
    static const struct option opts[] = {
        {"to", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *to = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') return usage(stdout), 0;
        if (c == 't') to = optarg;
        else return fprintf(stderr, "alignprop-mpi lora: see --help\n"), 2;
    }
    if (argc - optind != 3 || strcmp(argv[optind], "convert") || !to) {
        fprintf(stderr, "alignprop-mpi lora: expected `lora convert IN OUT --to LAYOUT` (see --help)\n");
        return 2;
    }
    ap_lora_layout l;
    if (ap_lora_layout_parse(to, &l)) {
        fprintf(stderr, "alignprop-mpi lora: --to: %s\n", ap_errmsg());
        return 2;
    }
    if (convert(argv[optind + 1], argv[optind + 2], l)) {
        fprintf(stderr, "alignprop-mpi lora convert: %s\n", ap_errmsg());
        return 1;
    }
    return 0;
}
