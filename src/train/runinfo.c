/* runinfo.c: the run's self-description for the HDF5 logs (runinfo.h). */
#include "runinfo.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "train/git_version.h"
#include "train/job.h"
#include "train/program_version.h"

/* The value after "key" and ':' on a line of file f; 1 when found. */
static int proc_value(const char *file, const char *key, char *out, size_t cap) {
    FILE *f = fopen(file, "r");
    char line[512];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!c || strncmp(line, key, strlen(key))) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = '\0';
        snprintf(out, cap, "%s", c);
        found = 1;
    }
    if (f) fclose(f);
    return found;
}

static void describe_gpus(char *out, size_t cap, const char *backend) {
    if (strcmp(backend, "cuda")) {
        snprintf(out, cap, "none used (backend %s)", backend);
        return;
    }
    out[0] = '\0';
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    struct dirent *e;
    size_t k = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[512], model[256];
        snprintf(p, sizeof p, "/proc/driver/nvidia/gpus/%s/information", e->d_name);
        if (proc_value(p, "Model", model, sizeof model) && k + 2 < cap)
            k += (size_t)snprintf(out + k, cap - k, "%s%s (%s)", k ? "; " : "", model, e->d_name);
    }
    if (d) closedir(d);
    if (!out[0]) snprintf(out, cap, "CUDA device (model unknown: /proc/driver/nvidia unreadable)");
}

static const char *reward_meaning(ap_reward_kind k) {
    switch (k) {
    case AP_REWARD_AESTHETIC:
        return "aesthetic: LAION aesthetic predictor score (CLIP ViT-L/14 + MLP, a 1..10 rating): "
               "larger = more aesthetic; loss = grad_scale x |score - aesthetic_target|";
    case AP_REWARD_HPS:
        return "hps: HPSv2 score (image-prompt similarity, about 0.2..0.35): larger = preferred "
               "by people for the prompt; loss = grad_scale x (1 - score)";
    case AP_REWARD_PICKSCORE:
        return "pickscore: PickScore (exp(logit_scale) x image-prompt cosine, about 15..25): "
               "larger = preferred by people for the prompt; loss = -score";
    case AP_REWARD_DEMO:
        return "demo: colourfulness (Hasler & Suesstrunk 2003) of the image in [0, 1]: larger = "
               "more colourful; loss = -colourfulness";
    case AP_REWARD_MIX: break;
    }
    return "unknown";
}

/* One kind's meaning, or a mixture's: the weighted sum, then each part's. */
static void describe_reward(char *out, size_t cap, const ap_train_config *c) {
    if (c->reward != AP_REWARD_MIX) {
        snprintf(out, cap, "%s", reward_meaning(c->reward));
        return;
    }
    size_t k = (size_t)snprintf(out, cap, "a mixture: reward = sum of w_i x reward_i, loss = sum "
                                          "of w_i x loss_i; larger = better by the weighted parts:");
    for (int i = 0; i < c->n_parts && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, " [w = %g] %s;", c->part_weight[i],
                              reward_meaning(c->part_kind[i]));
}

void ap_runinfo_fill(ap_runinfo *ri, const ap_job *j) {
    const ap_train_config *c = j->cfg;
    memset(ri, 0, sizeof *ri);
    if (gethostname(ri->host, sizeof ri->host - 1)) snprintf(ri->host, sizeof ri->host, "unknown");
    char model[256] = "unknown";
    proc_value("/proc/cpuinfo", "model name", model, sizeof model);
    snprintf(ri->cpu, sizeof ri->cpu, "%s, %ld logical CPUs online", model,
             sysconf(_SC_NPROCESSORS_ONLN));
    describe_gpus(ri->gpu, sizeof ri->gpu, c->backend);
    describe_reward(ri->reward, sizeof ri->reward, c);
    ri->meta = (ap_h5log_meta){
        .program_version = AP_PROGRAM_VERSION, .git_commit = AP_GIT_COMMIT,
        .config = c->text ? c->text : "", .reward = ap_reward_name(j->reward),
        .reward_meaning = ri->reward, .hostname = ri->host, .cpu = ri->cpu,
        .gpu = ri->gpu, .backend = c->backend, .ranks = j->plan.world,
        .capacities = j->plan.capacity, .global_batch = j->plan.global_batch};
}
