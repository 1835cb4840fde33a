/* main.c: the alignprop-mpi command line: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/err.h"
#include "core/isa.h"
#include "ops/select.h"
#ifdef AP_HAVE_CUDA
#include "cuda_backend.h" /* kernels/: ap_cuda_provide */
#endif

#ifndef AP_VERSION
#define AP_VERSION "unknown"
#endif

static void usage(FILE *f) {
    fprintf(f,
            "usage: alignprop-mpi COMMAND [options]     (alignprop-mpi COMMAND --help)\n"
            "       alignprop-mpi CONFIG.yaml [options]  (training; alignprop-mpi CONFIG.yaml --help)\n"
            "\n"
            "Fine-tunes LoRA adapters of Stable Diffusion v1.5 by backpropagating a\n"
            "differentiable reward (aesthetic, HPSv2) through the DDIM sampler.\n"
            "\n"
            "commands:\n"
            "  sample        generate PNG images from prompts (a diffusers model directory,\n"
            "                optionally with LoRA, or the tiny in-process model)\n"
            "  report        write a run's self-contained HTML report (charts, evaluation\n"
            "                images, config) from its directory, also while it runs\n"
            "  lora convert  rewrite a LoRA in the diffusers-attn-procs, peft or kohya layout\n"
            "  inspect       describe a model, weights file, LoRA, checkpoint or run log\n"
            "\n"
            "options:\n"
            "  --help        show this help and exit\n"
            "  --version     print the version, the CPU's features and the kernel\n"
            "                variant used (AP_CPU_ISA=avx512|avx2|generic forces one)\n");
}

int main(int argc, char **argv) {
#ifdef AP_HAVE_CUDA
    ap_cuda_provide(); /* `backend: cuda`, sample --backend cuda (docs/cuda.md §6) */
#endif
    if (argc >= 2 && !strcmp(argv[1], "sample")) return ap_cmd_sample(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "report")) return ap_cmd_report(argc - 1, argv + 1);
    /* LoRA layouts and inspection (docs/lora.md) */
    if (argc >= 2 && !strcmp(argv[1], "lora")) return ap_cmd_lora(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "inspect")) return ap_cmd_inspect(argc - 1, argv + 1);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version")) {
        char cpu[512];
        if (ap_cpu_isa_init()) {
            fprintf(stderr, "alignprop-mpi: %s\n", ap_errmsg());
            return 2;
        }
        printf("alignprop-mpi %s\n", AP_VERSION);
        printf("%s\n", ap_cpu_describe(cpu, sizeof cpu));
        ap_backend_describe(cpu, sizeof cpu);
        printf("%s\n", cpu);
        return 0;
    }
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    return ap_cmd_train(argc, argv);
}
