/* main.c: the alignprop-mpi command line. */
#include <stdio.h>
#include <string.h>

#ifndef AP_VERSION
#define AP_VERSION "unknown"
#endif

static void usage(FILE *f) {
    fprintf(f,
            "usage: alignprop-mpi [options] CONFIG.yaml\n"
            "       mpirun -np N alignprop-mpi CONFIG.yaml\n"
            "\n"
            "Fine-tunes LoRA adapters of Stable Diffusion v1.5 by backpropagating a\n"
            "differentiable reward (aesthetic, HPSv2) through the DDIM sampler.\n"
            "\n"
            "options:\n"
            "  --help        show this help and exit\n"
            "  --version     print the version and exit\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("alignprop-mpi %s\n", AP_VERSION);
            return 0;
        }
    }
    usage(stderr);
    fprintf(stderr, "alignprop-mpi: the training job is not implemented yet\n");
    return 2;
}
