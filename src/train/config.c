/* config.c: the training job's YAML configuration (config.h): a table of
 * keys (name, type, range, default, field), a strict reader over libyaml's
 * document tree, --set overrides, path resolution, cross-key checks, the
 * resolved config re-emitted as YAML, and the batch arithmetic. */
#include "train/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/err.h"
#include "core/path.h"
#include "io/json.h"

typedef enum { K_BOOL, K_INT, K_U64, K_DOUBLE, K_STR, K_PATH, K_ENUM, K_PAIR, K_HOSTS, K_ANY } ktype;

typedef struct key {
    const char *name;   /* dotted */
    ktype type;
    size_t off;         /* into ap_train_config; (size_t)-1: accepted, not stored */
    size_t cap;         /* string capacity */
    double lo, hi;      /* numeric range (inclusive) */
    const char *def;    /* default, as YAML text */
    const char *choices;/* K_ENUM: "a|b|c" */
    const char *doc;
} key;

#define F(f) offsetof(ap_train_config, f)
#define S(f) offsetof(ap_train_config, f), sizeof(((ap_train_config *)0)->f)
#define NOSTORE ((size_t)-1), 0
#define BIG 1e300

/* Order: top level, then train.*, pretrained.*, reward.* (the emitted YAML
 * follows it). Defaults are AlignProp's general() (config/align_prop.py). */
static const key KEYS[] = {
    {"run_name", K_STR, S(run_name), 0, 0, "\"\"", 0, "run directory name under logdir (\"\": the config file's name)"},
    {"logdir", K_PATH, S(logdir), 0, 0, "logs", 0, "top-level output directory"},
    {"seed", K_U64, F(seed), 0, 0, 1.8446744073709552e19, "42", 0, "random seed"},
    {"num_epochs", K_INT, F(num_epochs), 0, 1, 1e6, "100", 0, "epochs to train"},
    {"save_freq", K_INT, F(save_freq), 0, 1, 1e6, "4", 0, "checkpoint every N epochs"},
    {"num_checkpoint_limit", K_INT, F(num_checkpoint_limit), 0, 1, 1e6, "10", 0, "checkpoints kept"},
    {"vis_freq", K_INT, F(vis_freq), 0, 1, 1e9, "1", 0, "evaluate every N optimizer steps"},
    {"max_vis_images", K_INT, F(max_vis_images), 0, 0, 1e6, "2", 0, "evaluation images = per_gpu_capacity x this"},
    {"only_eval", K_BOOL, NOSTORE, 0, 0, "false", 0, "evaluate only (configs/evaluate.yaml)"},
    {"soup_inference", K_BOOL, NOSTORE, 0, 0, "false", 0, "evaluate a LoRA soup (configs/evaluate_soup.yaml)"},
    {"same_evaluation", K_BOOL, F(same_evaluation), 0, 0, 0, "true", 0, "fixed evaluation latents"},
    {"visualize_train", K_BOOL, F(visualize_train), 0, 0, 0, "false", 0, "rank 0's training samples every vis_freq steps: PNGs + grid in train_vis/, TensorBoard images"},
    {"visualize_eval", K_BOOL, F(visualize_eval), 0, 0, 0, "true", 0, "evaluate during training"},
    {"log_tensorboard", K_BOOL, F(log_tensorboard), 0, 0, 0, "true", 0, "TensorBoard event files in <run>/tb/, written live by rank 0 (docs/logging.md)"},
    {"resume_from", K_PATH, S(resume_from), 0, 0, "\"\"", 0, "checkpoint directory or LoRA file to start training from / to evaluate"},
    {"resume_from_2", K_PATH, S(resume_from_2), 0, 0, "\"\"", 0, "second LoRA of a soup (stablediffusion / same: the base model)"},
    {"mixing_coef_1", K_DOUBLE, F(mixing_coef_1), 0, 0, 1, "0.0", 0, "soup weight of resume_from"},
    {"mixed_precision", K_ENUM, S(mixed_precision), 0, 0, "fp16", "no|fp16|bf16", "bf16: frozen UNet, VAE and reward weights in bf16 (LoRA, grads, AdamW fp32); fp16: CUDA only (CPU: fp32)"},
    {"allow_tf32", K_BOOL, F(allow_tf32), 0, 0, 0, "true", 0, "CUDA backend: tf32 matmuls"},
    {"backend", K_ENUM, S(backend), 0, 0, "cpu", "cpu|cuda", "compute backend"},
    {"grad_checkpoint", K_BOOL, F(grad_checkpoint), 0, 0, 0, "true", 0, "accepted: per-step checkpointing is always on"},
    {"checksum_every", K_INT, F(checksum_every), 0, 1, 1e9, "10", 0, "ranks compare a LoRA checksum every N steps"},
    {"max_nonfinite_steps", K_INT, F(max_nonfinite_steps), 0, 1, 1e6, "5", 0, "a step with a non-finite loss or gradient is skipped; stop after N in a row"},
    {"debug", K_BOOL, NOSTORE, 0, 0, "false", 0, "accepted, unused"},
    {"use_lora", K_BOOL, NOSTORE, 0, 0, "true", 0, "must be true (LoRA training)"},
    {"prompt_fn", K_STR, NOSTORE, 0, 0, "simple_animals", 0, "training prompts: a name (<prompts_dir>/<name>.txt) or a .txt path"},
    {"eval_prompt_fn", K_STR, NOSTORE, 0, 0, "\"\"", 0, "evaluation prompts (\"\": prompt_fn)"},
    {"prompts_dir", K_PATH, NOSTORE, 0, 0, "assets", 0, "folder of named prompt files (AlignProp's assets/)"},
    {"reward_fn", K_ENUM, NOSTORE, 0, 0, "aesthetic", "aesthetic|hps|demo|aesthetic_score|pickscore", "reward, or a weighted mixture {aesthetic: 1.0, hps: 2.0} (train on the weighted sum; each part logged and evaluated)"},
    {"per_prompt_stat_tracking", K_ANY, NOSTORE, 0, 0, "{}", 0, "accepted, unused (a DDPO option)"},
    {"aesthetic_target", K_DOUBLE, F(aesthetic_target), 0, -BIG, BIG, "10", 0, "aesthetic loss |r - target|"},
    {"grad_scale", K_DOUBLE, F(grad_scale), 0, -BIG, BIG, "1", 0, "loss multiplier"},
    {"sd_guidance_scale", K_DOUBLE, F(guidance_scale), 0, 0, 1e4, "7.5", 0, "classifier-free guidance"},
    {"steps", K_INT, F(steps), 0, 1, 1000, "50", 0, "DDIM steps"},
    {"eta", K_DOUBLE, F(eta), 0, 0, 1e3, "0.0", 0, "DDIM eta"},
    {"resolution", K_INT, F(resolution), 0, 8, 8192, "512", 0, "image height = width (tiny model: 64)"},
    {"lora_rank", K_INT, F(lora_rank), 0, 1, 1024, "4", 0, "LoRA rank"},
    {"truncated_backprop", K_BOOL, F(truncated_backprop), 0, 0, 0, "false", 0, "truncate backprop through DDIM"},
    {"truncated_backprop_rand", K_BOOL, F(truncated_backprop_rand), 0, 0, 0, "false", 0, "random truncation"},
    {"truncated_backprop_minmax", K_PAIR, F(truncated_backprop_minmax), 0, 0, 1000, "[35, 45]", 0, "random K bounds, inclusive"},
    {"trunc_backprop_timestep", K_INT, F(trunc_backprop_timestep), 0, 0, 1000, "100", 0, "fixed truncation: steps i >= this attached"},
    {"truncated_backprop_mode", K_ENUM, NOSTORE, 0, 0, "per_step", "per_step|per_trajectory", "random K per step (main.py) or per sample (paper)"},
    {"draft_lv_n", K_INT, F(draft_lv_n), 0, 0, 64, "0", 0, "DRaFT-LV: with K = 1, the gradient is the mean over N re-noised copies of the last step (0: off; docs/draft.md §1)"},
    {"kl_coeff", K_DOUBLE, F(kl_coeff), 0, 0, BIG, "0", 0, "DRaFT+ regulariser: + kl_coeff x mean over samples of the mean squared difference between the LoRA and base models' guided noise predictions at the attached steps (0: off; docs/draft.md §2)"},
    {"train.loss_coeff", K_DOUBLE, F(loss_coeff), 0, -BIG, BIG, "1.0", 0, "loss multiplier"},
    {"train.learning_rate", K_DOUBLE, F(learning_rate), 0, 1e-300, 1e3, "3e-4", 0, "AdamW learning rate"},
    {"train.adam_beta1", K_DOUBLE, F(adam_beta1), 0, 0, 0.999999999, "0.9", 0, "AdamW beta1, in [0, 1)"},
    {"train.adam_beta2", K_DOUBLE, F(adam_beta2), 0, 0, 0.999999999, "0.999", 0, "AdamW beta2, in [0, 1)"},
    {"train.adam_weight_decay", K_DOUBLE, F(adam_weight_decay), 0, 0, 1e3, "1e-4", 0, "AdamW decoupled weight decay"},
    {"train.adam_epsilon", K_DOUBLE, F(adam_epsilon), 0, 1e-300, 1, "1e-8", 0, "AdamW epsilon"},
    {"train.max_grad_norm", K_DOUBLE, F(max_grad_norm), 0, 1e-300, BIG, "1.0", 0, "global L2 gradient clipping"},
    {"train.use_8bit_adam", K_BOOL, NOSTORE, 0, 0, "false", 0, "must be false"},
    {"train.total_samples_per_epoch", K_INT, F(total_samples_per_epoch), 0, 1, 1e9, "256", 0, "samples per epoch"},
    {"train.total_batch_size", K_INT, F(total_batch_size), 0, 1, 1e9, "128", 0, "samples per optimizer step (global)"},
    {"train.per_gpu_capacity", K_INT, F(per_gpu_capacity), 0, 1, 256, "4", 0, "micro-batch per rank"},
    {"train.per_gpu_capacity_by_host", K_HOSTS, NOSTORE, 0, 0, "{}", 0, "{hostname: capacity}"},
    {"pretrained.model", K_PATH, S(model), 0, 0, "runwayml/stable-diffusion-v1-5", 0, "diffusers directory or tiny:SEED"},
    {"pretrained.revision", K_STR, S(revision), 0, 0, "main", 0, "accepted, unused (no hub)"},
    {"reward.aesthetic_clip", K_PATH, S(aesthetic_clip), 0, 0, "\"\"", 0, "openai/clip-vit-large-patch14 directory"},
    {"reward.aesthetic_mlp", K_PATH, S(aesthetic_mlp), 0, 0, "\"\"", 0, "sac+logos+ava1-l14-linearMSE.pth"},
    {"reward.hps_checkpoint", K_PATH, S(hps_checkpoint), 0, 0, "\"\"", 0, "HPS_v2_compressed.pt (v2.0) or HPS_v2.1_compressed.pt (v2.1)"},
    {"reward.hps_version", K_ENUM, S(hps_version), 0, 0, "v2.0", "v2.0|v2.1", "which HPS reward.hps_checkpoint holds (same architecture, other weights; recorded in the run's config)"},
    {"reward.hps_config", K_PATH, S(hps_config), 0, 0, "\"\"", 0, "open_clip ViT-H-14.json"},
    {"reward.hps_tokenizer", K_PATH, S(hps_tokenizer), 0, 0, "\"\"", 0, "bpe_simple_vocab_16e6.txt.gz"},
    {"reward.pickscore_model", K_PATH, S(pickscore_model), 0, 0, "\"\"", 0, "yuvalkirstain/PickScore_v1 directory (transformers CLIPModel)"},
    {"reward.pickscore_tokenizer", K_PATH, S(pickscore_tokenizer), 0, 0, "\"\"", 0, "directory with vocab.json and merges.txt (laion/CLIP-ViT-H-14-laion2B-s32B-b79K's)"},
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

#define MAX_ITEMS 64

typedef struct slot {
    int set;                       /* 0 default, 1 file, 2 --set */
    char where[AP_CFG_PATH + 32];  /* "configs/x.yaml:12" or "--set" */
    int kind;                      /* 0 scalar, 1 sequence, 2 mapping */
    int n;                         /* items (sequence / mapping) */
    char *item[MAX_ITEMS];         /* scalar text, or sequence items, or mapping values */
    char *mkey[MAX_ITEMS];         /* mapping keys */
    int quoted;                    /* scalar was quoted (a string, never null) */
} slot;

typedef struct reader {
    const char *file;
    const char *dir;     /* directory of the config file, for relative paths */
    slot s[NKEYS];
} reader;

static void slot_clear(slot *s) {
    for (int i = 0; i < MAX_ITEMS; i++) free(s->item[i]), free(s->mkey[i]);
    memset(s, 0, sizeof *s);
}

static int key_index(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].name, name)) return i;
    return -1;
}

static int is_section(const char *name) {
    return !strcmp(name, "train") || !strcmp(name, "pretrained") || !strcmp(name, "reward");
}

/* Levenshtein distance, for "did you mean". */
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static const char *closest(const char *name) {
    const char *best = NULL;
    int bd = 99;
    const char *leaf = strrchr(name, '.');
    leaf = leaf ? leaf + 1 : name;
    for (int i = 0; i < NKEYS; i++) {
        const char *kl = strrchr(KEYS[i].name, '.');
        kl = kl ? kl + 1 : KEYS[i].name;
        int d = edit_distance(name, KEYS[i].name), d2 = edit_distance(leaf, kl) + 1;
        if (d2 < d) d = d2;
        if (d < bd) bd = d, best = KEYS[i].name;
    }
    return bd <= 4 ? best : NULL;
}

static int unknown_key(const char *where, const char *name) {
    const char *c = closest(name);
    if (c) return ap_fail("%s: %s: unknown key (did you mean %s?)", where, name, c);
    return ap_fail("%s: %s: unknown key (configs/README.md lists every key)", where, name);
}

static const char *node_text(yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* keys whose value may be a mapping: reward_fn's is a reward mixture */
static int takes_mapping(int k) {
    return KEYS[k].type == K_HOSTS || KEYS[k].type == K_ANY || !strcmp(KEYS[k].name, "reward_fn");
}

/* Store node v as the value of key index k. */
static int store(reader *r, int k, yaml_document_t *doc, yaml_node_t *v, const char *where, int origin) {
    slot *s = &r->s[k];
    if (s->set == origin && origin == 1)
        return ap_fail("%s: %s: duplicate key (first set at %s)", where, KEYS[k].name, s->where);
    slot_clear(s);
    s->set = origin;
    snprintf(s->where, sizeof s->where, "%s", where);
    if (v->type == YAML_SCALAR_NODE) {
        s->kind = 0;
        s->n = 1;
        s->item[0] = strdup(node_text(v));
        s->quoted = v->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    v->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        return s->item[0] ? AP_OK : ap_fail("out of memory");
    }
    if (v->type == YAML_SEQUENCE_NODE) {
        s->kind = 1;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(doc, *it);
            if (s->n >= MAX_ITEMS) return ap_fail("%s: %s: more than %d items", where, KEYS[k].name, MAX_ITEMS);
            if (!e || e->type != YAML_SCALAR_NODE)
                return ap_fail("%s: %s: expected a list of numbers, found a nested structure", where, KEYS[k].name);
            s->item[s->n++] = strdup(node_text(e));
        }
        return AP_OK;
    }
    s->kind = 2;
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        if (s->n >= MAX_ITEMS) return ap_fail("%s: %s: more than %d entries", where, KEYS[k].name, MAX_ITEMS);
        if (!kn || kn->type != YAML_SCALAR_NODE)
            return ap_fail("%s: %s: expected scalar keys", where, KEYS[k].name);
        s->mkey[s->n] = strdup(node_text(kn));
        s->item[s->n++] = strdup(vn && vn->type == YAML_SCALAR_NODE ? node_text(vn) : "{...}");
    }
    return AP_OK;
}

static int walk(reader *r, yaml_document_t *doc, yaml_node_t *map, const char *prefix) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key), *vn = yaml_document_get_node(doc, p->value);
        char where[AP_CFG_PATH + 32], name[256];
        snprintf(where, sizeof where, "%s:%lu", r->file, (unsigned long)kn->start_mark.line + 1);
        if (kn->type != YAML_SCALAR_NODE)
            return ap_fail("%s: expected a key name, found a %s", where,
                           kn->type == YAML_MAPPING_NODE ? "mapping" : "list");
        snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", node_text(kn));
        int k = key_index(name);
        if (k < 0 && is_section(name)) {
            if (vn->type != YAML_MAPPING_NODE)
                return ap_fail("%s: %s: expected a mapping of %s.* keys, found %s", where, name, name,
                               vn->type == YAML_SCALAR_NODE ? node_text(vn) : "a list");
            AP_TRY(walk(r, doc, vn, name));
            continue;
        }
        if (k < 0) return unknown_key(where, name);
        snprintf(where, sizeof where, "%s:%lu", r->file, (unsigned long)vn->start_mark.line + 1);
        if (vn->type == YAML_MAPPING_NODE && !takes_mapping(k))
            return ap_fail("%s: %s: expected a single value, found a mapping", where, name);
        if (vn->type == YAML_SEQUENCE_NODE && KEYS[k].type != K_PAIR)
            return ap_fail("%s: %s: expected a single value, found a list", where, name);
        AP_TRY(store(r, k, doc, vn, where, 1));
    }
    return AP_OK;
}

static int yaml_error(const char *what, yaml_parser_t *p) {
    return ap_fail("%s:%lu:%lu: YAML syntax error: %s%s%s", what,
                   (unsigned long)p->problem_mark.line + 1, (unsigned long)p->problem_mark.column + 1,
                   p->problem ? p->problem : "malformed", p->context ? " " : "",
                   p->context ? p->context : "");
}

static int read_file_doc(reader *r, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return ap_fail("%s: cannot open the config file: %s", path, strerror(errno));
    yaml_parser_t p;
    yaml_document_t doc;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = AP_OK;
    if (!yaml_parser_load(&p, &doc)) {
        rc = yaml_error(path, &p);
        yaml_parser_delete(&p);
        fclose(f);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        rc = ap_fail("%s: empty config file: expected a mapping of keys (see configs/README.md)", path);
    else if (root->type != YAML_MAPPING_NODE)
        rc = ap_fail("%s:%lu: expected a mapping of keys at the top level, found %s", path,
                     (unsigned long)root->start_mark.line + 1,
                     root->type == YAML_SCALAR_NODE ? node_text(root) : "a list");
    else
        rc = walk(r, &doc, root, "");
    /* a second document is a mistake (a stray '---') */
    if (!rc) {
        yaml_document_t d2;
        if (yaml_parser_load(&p, &d2)) {
            if (yaml_document_get_root_node(&d2))
                rc = ap_fail("%s: more than one YAML document: expected one mapping", path);
            yaml_document_delete(&d2);
        } else {
            rc = yaml_error(path, &p);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

static int apply_set(reader *r, const char *kv) {
    const char *eq = strchr(kv, '=');
    char name[256];
    if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof name)
        return ap_fail("--set %s: expected KEY=VALUE", kv);
    memcpy(name, kv, (size_t)(eq - kv));
    name[eq - kv] = '\0';
    int k = key_index(name);
    if (k < 0) return unknown_key("--set", name);
    const char *val = eq + 1;
    yaml_parser_t p;
    yaml_document_t doc;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)val, strlen(val));
    int rc;
    if (!yaml_parser_load(&p, &doc)) {
        rc = ap_fail("--set %s: cannot parse the value \"%s\": %s", name, val,
                     p.problem ? p.problem : "malformed");
        yaml_parser_delete(&p);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        /* "key=" : an empty string */
        yaml_document_delete(&doc);
        yaml_parser_delete(&p);
        slot *s = &r->s[k];
        slot_clear(s);
        s->set = 2, s->n = 1, s->quoted = 1;
        snprintf(s->where, sizeof s->where, "--set");
        s->item[0] = strdup("");
        return AP_OK;
    }
    if (root->type == YAML_MAPPING_NODE && !takes_mapping(k))
        rc = ap_fail("--set %s: expected a single value, found a mapping", name);
    else if (root->type == YAML_SEQUENCE_NODE && KEYS[k].type != K_PAIR)
        rc = ap_fail("--set %s: expected a single value, found a list", name);
    else
        rc = store(r, k, &doc, root, "--set", 2);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return rc;
}

/* ---- conversion ---------------------------------------------------------- */

typedef struct conv {
    reader *r;
    ap_train_config *c;
    /* NOSTORE values */
    int only_eval, soup, use_lora, use_8bit;
    char prompt_fn[AP_CFG_PATH], eval_prompt_fn[AP_CFG_PATH], prompts_dir[AP_CFG_PATH];
    char reward_fn[32], trunc_mode[32];
} conv;

static const char *where_of(const reader *r, int k) {
    return r->s[k].set ? r->s[k].where : r->file; /* unset: the default */
}

/* The scalar text of key k: its value or its default ("" for null). */
static const char *scalar(const reader *r, int k, int *quoted) {
    const slot *s = &r->s[k];
    if (s->set) {
        if (quoted) *quoted = s->quoted;
        return s->item[0] ? s->item[0] : "";
    }
    if (quoted) *quoted = 1;
    const char *d = KEYS[k].def;
    return !strcmp(d, "\"\"") ? "" : d;
}

static int is_null(const char *t, int quoted) {
    return !quoted && (!*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
                       !strcmp(t, "NULL"));
}

static int bad_value(const reader *r, int k, const char *found, const char *fmt, ...) AP_PRINTF(4, 5);
static int bad_value(const reader *r, int k, const char *found, const char *fmt, ...) {
    char exp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(exp, sizeof exp, fmt, ap);
    va_end(ap);
    return ap_fail("%s: %s: expected %s, found \"%s\"", where_of(r, k), KEYS[k].name, exp, found);
}

static int conv_bool(const reader *r, int k, int *out) {
    int q;
    const char *t = scalar(r, k, &q);
    if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE")) *out = 1;
    else if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE")) *out = 0;
    else return bad_value(r, k, t, "true or false");
    if (q && r->s[k].set) return bad_value(r, k, t, "true or false (unquoted)");
    return AP_OK;
}

static int conv_int(const reader *r, int k, int *out) {
    const char *t = scalar(r, k, NULL);
    char *end = NULL;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    long long lo = (long long)KEYS[k].lo, hi = (long long)KEYS[k].hi;
    if (!*t || *end || errno == ERANGE || v < lo || v > hi)
        return bad_value(r, k, t, "an integer in %lld..%lld", lo, hi);
    *out = (int)v;
    return AP_OK;
}

static int conv_u64(const reader *r, int k, uint64_t *out) {
    const char *t = scalar(r, k, NULL);
    char *end = NULL;
    errno = 0;
    if (!*t || *t == '-') return bad_value(r, k, t, "an integer in 0..18446744073709551615");
    unsigned long long v = strtoull(t, &end, 10);
    if (*end || errno == ERANGE) return bad_value(r, k, t, "an integer in 0..18446744073709551615");
    *out = v;
    return AP_OK;
}

static int conv_double(const reader *r, int k, double *out) {
    const char *t = scalar(r, k, NULL);
    char *end = NULL;
    errno = 0;
    double v = strtod(t, &end);
    double lo = KEYS[k].lo, hi = KEYS[k].hi;
    char range[128];
    if (lo <= -BIG && hi >= BIG) snprintf(range, sizeof range, "a finite number");
    else if (lo == 1e-300 && hi >= BIG) snprintf(range, sizeof range, "a number > 0");
    else if (lo == 1e-300) snprintf(range, sizeof range, "a number in (0, %g]", hi);
    else if (hi == 0.999999999) snprintf(range, sizeof range, "a number in [%g, 1)", lo);
    else snprintf(range, sizeof range, "a number in [%g, %g]", lo, hi);
    if (!*t || *end || !isfinite(v) || (errno == ERANGE && fabs(v) > 1) || v < lo || v > hi)
        return bad_value(r, k, t, "%s", range);
    *out = v;
    return AP_OK;
}

static int conv_str(const reader *r, int k, char *out, size_t cap) {
    int q;
    const char *t = scalar(r, k, &q);
    if (is_null(t, q)) t = "";
    if (strlen(t) >= cap) return bad_value(r, k, "...", "at most %zu bytes", cap - 1);
    memcpy(out, t, strlen(t) + 1);
    return AP_OK;
}

static int conv_enum(const reader *r, int k, char *out, size_t cap) {
    const char *t = scalar(r, k, NULL);
    const char *ch = KEYS[k].choices;
    size_t n = strlen(t);
    for (const char *p = ch; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, t, n) && n < cap) {
            memcpy(out, t, n + 1);
            return AP_OK;
        }
        p += l + (e != NULL);
    }
    char alt[256];
    snprintf(alt, sizeof alt, "one of %s", ch);
    for (char *p = alt; *p; p++) if (*p == '|') *p = '/';
    return bad_value(r, k, t, "%s", alt);
}

/* reward_fn as a mapping {name: weight}: a mixture of distinct rewards
 * (aesthetic, hps, demo) with finite non-zero weights, in the mapping's order. */
static int conv_mix(const reader *r, int k, ap_train_config *c) {
    const slot *s = &r->s[k];
    static const char *const names[4] = {"aesthetic", "hps", "demo", "pickscore"};
    static const ap_reward_kind kinds[4] = {AP_REWARD_AESTHETIC, AP_REWARD_HPS, AP_REWARD_DEMO,
                                            AP_REWARD_PICKSCORE};
    if (s->n < 1 || s->n > AP_REWARD_MAX_PARTS)
        return ap_fail("%s: reward_fn: expected a mapping of 1 to %d rewards {aesthetic|hps|demo|pickscore: "
                       "weight}, found %d entries", s->where, AP_REWARD_MAX_PARTS, s->n);
    c->n_parts = 0;
    for (int i = 0; i < s->n; i++) {
        int j = 0;
        while (j < 4 && strcmp(s->mkey[i], names[j])) j++;
        if (j == 4)
            return ap_fail("%s: reward_fn: %s: expected a reward of a mixture (aesthetic, hps, "
                           "demo or pickscore), found \"%s\"", s->where, s->mkey[i], s->mkey[i]);
        for (int q = 0; q < i; q++)
            if (!strcmp(s->mkey[q], s->mkey[i]))
                return ap_fail("%s: reward_fn: %s: expected each reward once, found it twice",
                               s->where, s->mkey[i]);
        char *end = NULL;
        errno = 0;
        double w = strtod(s->item[i], &end);
        if (!*s->item[i] || *end || !isfinite(w) || w == 0 || errno == ERANGE)
            return ap_fail("%s: reward_fn: %s: expected a finite non-zero weight, found \"%s\"",
                           s->where, s->mkey[i], s->item[i]);
        c->part_kind[c->n_parts] = kinds[j];
        c->part_weight[c->n_parts++] = w;
    }
    return AP_OK;
}

/* Relative paths resolve against the config file's directory (file values)
 * or the current directory (--set and defaults). */
static int resolve_path(const reader *r, int k, char *p, size_t cap) {
    if (!*p || p[0] == '/' || r->s[k].set != 1 || !r->dir[0]) return AP_OK;
    if (!strcmp(p, "stablediffusion") || !strcmp(p, "same") || !strncmp(p, "tiny:", 5)) return AP_OK;
    char buf[AP_CFG_PATH];
    int n = snprintf(buf, sizeof buf, "%s/%s", r->dir, p);
    if (n < 0 || (size_t)n >= cap) return bad_value(r, k, p, "a path shorter than %zu bytes", cap);
    memcpy(p, buf, (size_t)n + 1);
    return AP_OK;
}

static int conv_pair(const reader *r, int k, int out[2]) {
    const slot *s = &r->s[k];
    char txt[256];
    const char *items[2];
    char a[64], b[64];
    if (!s->set) {
        if (sscanf(KEYS[k].def, "[%63[^,], %63[^]]]", a, b) != 2) return ap_fail("internal: default of %s", KEYS[k].name);
        items[0] = a, items[1] = b;
    } else {
        if (s->kind != 1 || s->n != 2) {
            snprintf(txt, sizeof txt, "%s", s->kind == 0 ? s->item[0] : "a list");
            if (s->kind == 1) snprintf(txt, sizeof txt, "a list of %d", s->n);
            return bad_value(r, k, txt, "a list of two integers [lo, hi]");
        }
        items[0] = s->item[0], items[1] = s->item[1];
    }
    for (int i = 0; i < 2; i++) {
        char *end = NULL;
        long v = strtol(items[i], &end, 10);
        if (!*items[i] || *end || v < (long)KEYS[k].lo || v > (long)KEYS[k].hi)
            return bad_value(r, k, items[i], "integers in %d..%d", (int)KEYS[k].lo, (int)KEYS[k].hi);
        out[i] = (int)v;
    }
    return AP_OK;
}

static int conv_hosts(const reader *r, int k, ap_train_config *c) {
    const slot *s = &r->s[k];
    c->n_hosts = 0;
    if (!s->set) return AP_OK;
    if (s->kind == 0 && is_null(s->item[0], s->quoted)) return AP_OK;
    if (s->kind != 2) return bad_value(r, k, s->kind == 0 ? s->item[0] : "a list", "a mapping {hostname: capacity}");
    for (int i = 0; i < s->n; i++) {
        char *end = NULL;
        long v = strtol(s->item[i], &end, 10);
        if (!*s->item[i] || *end || v < 1 || v > 256)
            return ap_fail("%s: %s: %s: expected an integer in 1..256, found \"%s\"", s->where,
                           KEYS[k].name, s->mkey[i], s->item[i]);
        if (strlen(s->mkey[i]) >= sizeof c->hosts[0].host)
            return ap_fail("%s: %s: host name too long", s->where, KEYS[k].name);
        snprintf(c->hosts[c->n_hosts].host, sizeof c->hosts[0].host, "%s", s->mkey[i]);
        c->hosts[c->n_hosts++].capacity = (int)v;
    }
    return AP_OK;
}

static int convert(conv *cv) {
    reader *r = cv->r;
    ap_train_config *c = cv->c;
    for (int k = 0; k < NKEYS; k++) {
        const key *K = &KEYS[k];
        char *field = K->off == (size_t)-1 ? NULL : (char *)c + K->off;
        const char *n = K->name;
        switch (K->type) {
        case K_BOOL: {
            int v = 0;
            AP_TRY(conv_bool(r, k, &v));
            if (field) *(int *)field = v;
            else if (!strcmp(n, "only_eval")) cv->only_eval = v;
            else if (!strcmp(n, "soup_inference")) cv->soup = v;
            else if (!strcmp(n, "use_lora")) cv->use_lora = v;
            else if (!strcmp(n, "train.use_8bit_adam")) cv->use_8bit = v;
            break;
        }
        case K_INT: AP_TRY(conv_int(r, k, (int *)field)); break;
        case K_U64: AP_TRY(conv_u64(r, k, (uint64_t *)field)); break;
        case K_DOUBLE: AP_TRY(conv_double(r, k, (double *)field)); break;
        case K_STR:
        case K_PATH: {
            char *dst = field;
            size_t cap = K->cap;
            if (!field) {
                dst = !strcmp(n, "prompt_fn") ? cv->prompt_fn
                    : !strcmp(n, "eval_prompt_fn") ? cv->eval_prompt_fn : cv->prompts_dir;
                cap = AP_CFG_PATH;
            }
            AP_TRY(conv_str(r, k, dst, cap));
            if (K->type == K_PATH) AP_TRY(resolve_path(r, k, dst, cap));
            break;
        }
        case K_ENUM:
            if (field) AP_TRY(conv_enum(r, k, field, K->cap));
            else if (!strcmp(n, "reward_fn") && r->s[k].set && r->s[k].kind == 2) {
                AP_TRY(conv_mix(r, k, c));
                snprintf(cv->reward_fn, sizeof cv->reward_fn, "mixture");
            } else if (!strcmp(n, "reward_fn")) AP_TRY(conv_enum(r, k, cv->reward_fn, sizeof cv->reward_fn));
            else AP_TRY(conv_enum(r, k, cv->trunc_mode, sizeof cv->trunc_mode));
            break;
        case K_PAIR: AP_TRY(conv_pair(r, k, (int *)field)); break;
        case K_HOSTS: AP_TRY(conv_hosts(r, k, c)); break;
        case K_ANY: break;
        }
    }
    return AP_OK;
}

/* A prompt_fn value: a name -> <prompts_dir>/<name>.txt; a path as given
 * (relative to the config file when it came from the file). */
static int prompt_path(conv *cv, const char *keyname, const char *v, char *out, size_t cap) {
    int k = key_index(keyname);
    size_t l = strlen(v);
    int is_path = strchr(v, '/') || (l > 4 && !strcmp(v + l - 4, ".txt"));
    int n;
    if (!is_path) n = snprintf(out, cap, "%s/%s.txt", cv->prompts_dir, v);
    else if (v[0] != '/' && cv->r->s[k].set == 1 && cv->r->dir[0]) n = snprintf(out, cap, "%s/%s", cv->r->dir, v);
    else n = snprintf(out, cap, "%s", v);
    if (n < 0 || (size_t)n >= cap) return bad_value(cv->r, k, v, "a shorter name");
    return AP_OK;
}

static int check(conv *cv) {
    reader *r = cv->r;
    ap_train_config *c = cv->c;
    int k;
    c->mode = cv->soup ? AP_RUN_EVALUATE_SOUP : cv->only_eval ? AP_RUN_EVALUATE : AP_RUN_TRAIN;
    c->reward = !strcmp(cv->reward_fn, "hps") ? AP_REWARD_HPS
              : !strcmp(cv->reward_fn, "demo") ? AP_REWARD_DEMO
              : !strcmp(cv->reward_fn, "mixture") ? AP_REWARD_MIX
              : !strcmp(cv->reward_fn, "pickscore") ? AP_REWARD_PICKSCORE : AP_REWARD_AESTHETIC;
    c->trunc_mode = !strcmp(cv->trunc_mode, "per_trajectory") ? AP_TRUNC_PER_TRAJECTORY : AP_TRUNC_PER_STEP;
    { /* the released files carry their version in their names (HPSv2's hps_version_map) */
        const char *base = strrchr(c->hps_checkpoint, '/');
        base = base ? base + 1 : c->hps_checkpoint;
        const char *named = !strcmp(base, "HPS_v2_compressed.pt") ? "v2.0"
                          : !strcmp(base, "HPS_v2.1_compressed.pt") ? "v2.1" : NULL;
        if (named && strcmp(named, c->hps_version))
            return bad_value(r, key_index("reward.hps_version"), c->hps_version,
                             "%s (reward.hps_checkpoint is %s; or name the file's version)", named, base);
    }
    if (!cv->use_lora)
        return bad_value(r, key_index("use_lora"), "false", "true (this port trains LoRA adapters only)");
    if (cv->use_8bit)
        return bad_value(r, key_index("train.use_8bit_adam"), "true", "false (8-bit Adam is not implemented)");
    if (!cv->prompt_fn[0]) return bad_value(r, key_index("prompt_fn"), "", "a prompt file name or path");
    AP_TRY(prompt_path(cv, "prompt_fn", cv->prompt_fn, c->prompt_file, sizeof c->prompt_file));
    if (cv->eval_prompt_fn[0])
        AP_TRY(prompt_path(cv, "eval_prompt_fn", cv->eval_prompt_fn, c->eval_prompt_file, sizeof c->eval_prompt_file));
    else
        memcpy(c->eval_prompt_file, c->prompt_file, sizeof c->eval_prompt_file);
    if (!c->logdir[0]) return bad_value(r, key_index("logdir"), "", "a directory");
    if (!c->model[0]) return bad_value(r, key_index("pretrained.model"), "", "a diffusers model directory or tiny:SEED");
    if (!strncmp(c->model, "tiny:", 5)) {
        char *end = NULL;
        const char *s = c->model + 5;
        errno = 0;
        strtoull(s, &end, 10);
        if (!*s || *end || *s == '-' || errno == ERANGE)
            return bad_value(r, key_index("pretrained.model"), c->model, "tiny:SEED with SEED a non-negative integer");
    }
    if (c->run_name[0] && (strchr(c->run_name, '/') || !strcmp(c->run_name, ".") || !strcmp(c->run_name, "..")))
        return bad_value(r, key_index("run_name"), c->run_name, "a name without '/'");
    if (c->resolution % 8)
        return bad_value(r, key_index("resolution"), scalar(r, key_index("resolution"), NULL), "a multiple of 8");
    if (c->truncated_backprop && c->truncated_backprop_rand) {
        k = key_index("truncated_backprop_minmax");
        if (c->truncated_backprop_minmax[0] > c->truncated_backprop_minmax[1] ||
            c->truncated_backprop_minmax[1] > c->steps) {
            char f[64];
            snprintf(f, sizeof f, "[%d, %d]", c->truncated_backprop_minmax[0], c->truncated_backprop_minmax[1]);
            return bad_value(r, k, f, "[lo, hi] with 0 <= lo <= hi <= steps (%d)", c->steps);
        }
    }
    if (c->truncated_backprop && !c->truncated_backprop_rand && c->trunc_backprop_timestep > c->steps) {
        k = key_index("trunc_backprop_timestep");
        return bad_value(r, k, scalar(r, k, NULL), "0..steps (%d) when truncated_backprop is on and "
                         "truncated_backprop_rand is off (steps i >= it are attached)", c->steps);
    }
    if (c->draft_lv_n > 0 && (!c->truncated_backprop || c->truncated_backprop_rand ||
                              c->trunc_backprop_timestep != c->steps - 1)) {
        k = key_index("draft_lv_n");
        return bad_value(r, k, scalar(r, k, NULL), "0 unless backprop is truncated to the last step "
                         "(K = 1: truncated_backprop true, truncated_backprop_rand false, "
                         "trunc_backprop_timestep = steps - 1 = %d; docs/draft.md §1)", c->steps - 1);
    }
    if (c->draft_lv_n > 0 && c->kl_coeff > 0) {
        k = key_index("draft_lv_n");
        return bad_value(r, k, scalar(r, k, NULL), "0 when kl_coeff > 0 (the two are not combined; "
                         "docs/draft.md)");
    }
    if (c->total_samples_per_epoch % c->total_batch_size) {
        k = key_index("train.total_samples_per_epoch");
        return ap_fail("%s: train.total_samples_per_epoch: expected a multiple of train.total_batch_size "
                       "(%d), found %d (e.g. %d)", where_of(r, k), c->total_batch_size,
                       c->total_samples_per_epoch,
                       (c->total_samples_per_epoch / c->total_batch_size + 1) * c->total_batch_size);
    }
    if (c->mode == AP_RUN_EVALUATE_SOUP && (!c->resume_from[0] || !c->resume_from_2[0])) {
        k = key_index(!c->resume_from[0] ? "resume_from" : "resume_from_2");
        return bad_value(r, k, "", "a checkpoint directory for soup_inference (resume_from_2 may be "
                         "stablediffusion: the base model)");
    }
    return AP_OK;
}

/* ---- the resolved config as YAML ----------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) AP_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->n) {
            b->n += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n + 64;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np, b->cap = nc;
    }
}

static void sb_quote(sbuf *b, const char *s) {
    sb_printf(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20) sb_printf(b, "\\x%02x", (unsigned char)*s);
        else sb_printf(b, "%c", *s);
    }
    sb_printf(b, "\"");
}

static void emit_value(sbuf *b, const conv *cv, int k) {
    const key *K = &KEYS[k];
    const ap_train_config *c = cv->c;
    const char *field = K->off == (size_t)-1 ? NULL : (const char *)c + K->off;
    const char *n = K->name;
    switch (K->type) {
    case K_BOOL: {
        int v = field ? *(const int *)field
              : !strcmp(n, "only_eval") ? cv->only_eval : !strcmp(n, "soup_inference") ? cv->soup
              : !strcmp(n, "use_lora") ? cv->use_lora : !strcmp(n, "train.use_8bit_adam") ? cv->use_8bit : 0;
        sb_printf(b, "%s", v ? "true" : "false");
        break;
    }
    case K_INT: sb_printf(b, "%d", *(const int *)field); break;
    case K_U64: sb_printf(b, "%llu", (unsigned long long)*(const uint64_t *)field); break;
    case K_DOUBLE: { /* the shortest text that reads back as the same double */
        double v = *(const double *)field;
        char t[64];
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(t, sizeof t, "%.*g", prec, v);
            if (strtod(t, NULL) == v) break;
        }
        sb_printf(b, "%s", t);
        break;
    }
    case K_STR:
    case K_PATH:
        sb_quote(b, field ? field : !strcmp(n, "prompt_fn") ? cv->prompt_fn
                 : !strcmp(n, "eval_prompt_fn") ? cv->eval_prompt_fn : cv->prompts_dir);
        break;
    case K_ENUM:
        if (!field && !strcmp(n, "reward_fn") && c->reward == AP_REWARD_MIX) {
            sb_printf(b, "{");
            for (int i = 0; i < c->n_parts; i++) {
                ap_reward_kind kd = c->part_kind[i];
                char t[64];
                for (int prec = 6; prec <= 17; prec++) { /* reads back as the same double */
                    snprintf(t, sizeof t, "%.*g", prec, c->part_weight[i]);
                    if (strtod(t, NULL) == c->part_weight[i]) break;
                }
                sb_printf(b, "%s\"%s\": %s", i ? ", " : "", kd == AP_REWARD_AESTHETIC ? "aesthetic"
                          : kd == AP_REWARD_HPS ? "hps" : kd == AP_REWARD_PICKSCORE ? "pickscore"
                          : "demo", t);
            }
            sb_printf(b, "}");
            break;
        }
        sb_quote(b, field ? field : !strcmp(n, "reward_fn") ? cv->reward_fn : cv->trunc_mode);
        break;
    case K_PAIR: sb_printf(b, "[%d, %d]", ((const int *)field)[0], ((const int *)field)[1]); break;
    case K_HOSTS:
        sb_printf(b, "{");
        for (int i = 0; i < c->n_hosts; i++) {
            sb_printf(b, "%s", i ? ", " : "");
            sb_quote(b, c->hosts[i].host);
            sb_printf(b, ": %d", c->hosts[i].capacity);
        }
        sb_printf(b, "}");
        break;
    case K_ANY: sb_printf(b, "{}"); break;
    }
}

static char *emit(const conv *cv) {
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.p) return NULL;
    b.p[0] = '\0';
    sb_printf(&b, "# resolved by alignprop-mpi from %s\n", cv->c->path);
    char cur[32] = "";
    for (int k = 0; k < NKEYS; k++) {
        const char *dot = strchr(KEYS[k].name, '.');
        char sec[32] = "";
        if (dot) snprintf(sec, sizeof sec, "%.*s", (int)(dot - KEYS[k].name), KEYS[k].name);
        if (strcmp(sec, cur)) sb_printf(&b, "%s:\n", sec);
        memcpy(cur, sec, sizeof cur);
        sb_printf(&b, dot ? "  %s: " : "%s: ", dot ? dot + 1 : KEYS[k].name);
        emit_value(&b, cv, k);
        sb_printf(&b, "\n");
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- public ---------------------------------------------------------------- */

int ap_config_load(ap_train_config *c, const char *path, const char *const *sets, int n_sets) {
    memset(c, 0, sizeof *c);
    if (strlen(path) >= sizeof c->path) return ap_fail("%s: config path too long", path);
    snprintf(c->path, sizeof c->path, "%s", path);
    reader *r = calloc(1, sizeof *r);
    conv *cv = calloc(1, sizeof *cv);
    char dir[AP_CFG_PATH];
    int rc = (!r || !cv) ? ap_fail("out of memory reading %s", path) : AP_OK;
    if (!rc) {
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
        r->file = path, r->dir = dir;
        cv->r = r, cv->c = c;
        if (ap_is_dir(path)) rc = ap_fail("%s: is a directory: expected a YAML config file", path);
    }
    if (!rc) rc = read_file_doc(r, path);
    for (int i = 0; i < n_sets && !rc; i++) rc = apply_set(r, sets[i]);
    if (!rc) rc = convert(cv);
    if (!rc) rc = check(cv);
    if (!rc) {
        c->text = emit(cv);
        if (!c->text) rc = ap_fail("out of memory: resolved config");
    }
    if (r)
        for (int k = 0; k < NKEYS; k++) slot_clear(&r->s[k]);
    free(r), free(cv);
    if (rc) ap_config_free(c);
    return rc;
}

void ap_config_free(ap_train_config *c) {
    free(c->text);
    c->text = NULL;
}

static int need_file(const char *keyname, const char *p) {
    if (!p[0]) return ap_fail("%s: expected a path, found \"\"", keyname);
    FILE *f = fopen(p, "rb");
    if (!f || ap_is_dir(p)) {
        if (f) fclose(f);
        return ap_fail("%s: %s: %s", keyname, p, ap_path_exists(p) ? "expected a file, found a directory"
                                                                   : "no such file");
    }
    fclose(f);
    return AP_OK;
}

static int need_dir(const char *keyname, const char *p, const char *what) {
    if (!ap_is_dir(p))
        return ap_fail("%s: %s: %s (expected %s)", keyname, p,
                       ap_path_exists(p) ? "not a directory" : "no such directory", what);
    return AP_OK;
}

int ap_config_check_files(const ap_train_config *c) {
    if (strncmp(c->model, "tiny:", 5) != 0) {
        char mi[AP_CFG_PATH + 32];
        AP_TRY(need_dir("pretrained.model", c->model,
                        "a diffusers Stable Diffusion directory, or tiny:SEED; hub names are not downloaded"));
        snprintf(mi, sizeof mi, "%s/model_index.json", c->model);
        if (!ap_is_file(mi))
            return ap_fail("pretrained.model: %s: no model_index.json (expected a diffusers model directory)", c->model);
        ap_json *idx = NULL;
        if (ap_json_parse_file(&idx, mi)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", ap_errmsg());
            return ap_fail("pretrained.model: %s: expected a diffusers model_index.json (a JSON "
                           "object), found: %s", mi, why);
        }
        int is_obj = idx->type == AP_JSON_OBJ;
        ap_json_free(idx);
        if (!is_obj)
            return ap_fail("pretrained.model: %s: expected a JSON object (a diffusers "
                           "model_index.json), found another JSON value", mi);
    }
    AP_TRY(need_file("prompt_fn", c->prompt_file));
    AP_TRY(need_file("eval_prompt_fn", c->eval_prompt_file));
    int n = c->reward == AP_REWARD_MIX ? c->n_parts : 1;
    for (int i = 0; i < n; i++) {
        ap_reward_kind kd = c->reward == AP_REWARD_MIX ? c->part_kind[i] : c->reward;
        if (kd == AP_REWARD_AESTHETIC) {
            AP_TRY(need_dir("reward.aesthetic_clip", c->aesthetic_clip, "an openai/clip-vit-large-patch14 directory"));
            AP_TRY(need_file("reward.aesthetic_mlp", c->aesthetic_mlp));
        } else if (kd == AP_REWARD_HPS) {
            AP_TRY(need_file("reward.hps_checkpoint", c->hps_checkpoint));
            AP_TRY(need_file("reward.hps_config", c->hps_config));
            AP_TRY(need_file("reward.hps_tokenizer", c->hps_tokenizer));
        } else if (kd == AP_REWARD_PICKSCORE) {
            char p[AP_CFG_PATH + 16];
            AP_TRY(need_dir("reward.pickscore_model", c->pickscore_model,
                            "a transformers CLIPModel directory (yuvalkirstain/PickScore_v1)"));
            AP_TRY(need_dir("reward.pickscore_tokenizer", c->pickscore_tokenizer,
                            "a directory with vocab.json and merges.txt"));
            snprintf(p, sizeof p, "%s/vocab.json", c->pickscore_tokenizer);
            AP_TRY(need_file("reward.pickscore_tokenizer", p));
            snprintf(p, sizeof p, "%s/merges.txt", c->pickscore_tokenizer);
            AP_TRY(need_file("reward.pickscore_tokenizer", p));
        }
    }
    if (c->mode != AP_RUN_TRAIN && c->resume_from[0] && !ap_path_exists(c->resume_from))
        return ap_fail("resume_from: %s: no such checkpoint or LoRA file", c->resume_from);
    if (c->mode == AP_RUN_TRAIN && c->resume_from[0] && !ap_path_exists(c->resume_from))
        return ap_fail("resume_from: %s: no such checkpoint directory or LoRA file", c->resume_from);
    if (c->mode == AP_RUN_EVALUATE_SOUP && strcmp(c->resume_from_2, "stablediffusion") &&
        strcmp(c->resume_from_2, "same") && !ap_path_exists(c->resume_from_2))
        return ap_fail("resume_from_2: %s: no such checkpoint or LoRA file (or stablediffusion / same: "
                       "the base model)", c->resume_from_2);
    return AP_OK;
}

int ap_config_capacity(const ap_train_config *c, const char *host, int cli, int *capacity) {
    int cap = c->per_gpu_capacity;
    for (int i = 0; i < c->n_hosts; i++)
        if (host && !strcmp(c->hosts[i].host, host)) cap = c->hosts[i].capacity;
    const char *e = getenv("AP_PER_GPU_CAPACITY");
    if (e && *e) {
        char *end = NULL;
        long v = strtol(e, &end, 10);
        if (*end || v < 1 || v > 256)
            return ap_fail("AP_PER_GPU_CAPACITY: expected an integer in 1..256, found \"%s\"", e);
        cap = (int)v;
    }
    if (cli > 0) cap = cli;
    *capacity = cap;
    return AP_OK;
}

int ap_batch_plan_make(ap_batch_plan *p, const ap_train_config *c, int world, const int *cap) {
    memset(p, 0, sizeof *p);
    if (world < 1) return ap_fail("batch plan: %d ranks", world);
    const int N = c->total_batch_size;
    long long sum = 0;
    for (int r = 0; r < world; r++) {
        if (cap[r] < 1) return ap_fail("batch plan: rank %d has capacity %d: expected >= 1", r, cap[r]);
        sum += cap[r];
    }
    p->world = world;
    p->global_batch = N;
    p->steps_per_epoch = c->total_samples_per_epoch / N;
    p->micro_batches = (int)((N + sum - 1) / sum);
    p->capacity = malloc(sizeof(int) * (size_t)world);
    p->share = malloc(sizeof(int) * (size_t)world);
    p->first = malloc(sizeof(int) * (size_t)world);
    if (!p->capacity || !p->share || !p->first) {
        ap_batch_plan_free(p);
        return ap_fail("out of memory: batch plan");
    }
    /* shares proportional to capacity (largest remainders in rank order),
     * never above G * cap[r] */
    int assigned = 0;
    for (int r = 0; r < world; r++) {
        p->capacity[r] = cap[r];
        p->share[r] = (int)((long long)N * cap[r] / sum);
        int lim = p->micro_batches * cap[r];
        if (p->share[r] > lim) p->share[r] = lim;
        assigned += p->share[r];
    }
    for (int pass = 0; assigned < N && pass < 2 * N + 2; pass++)
        for (int r = 0; r < world && assigned < N; r++)
            if (p->share[r] < p->micro_batches * cap[r]) p->share[r]++, assigned++;
    int off = 0;
    for (int r = 0; r < world; r++) p->first[r] = off, off += p->share[r];
    if (off != N) {
        ap_batch_plan_free(p);
        return ap_fail("batch plan: could not place %d samples on %d ranks", N, world);
    }
    return AP_OK;
}

void ap_batch_plan_free(ap_batch_plan *p) {
    free(p->capacity), free(p->share), free(p->first);
    p->capacity = p->share = p->first = NULL;
}

void ap_config_print(FILE *f, const ap_train_config *c, const ap_batch_plan *p) {
    fputs(c->text ? c->text : "", f);
    fprintf(f, "\n# batch arithmetic: %d rank%s\n", p->world, p->world == 1 ? "" : "s");
    fprintf(f, "#   global batch (train.total_batch_size)   %d samples per optimizer step\n", p->global_batch);
    fprintf(f, "#   samples per epoch                       %d\n", c->total_samples_per_epoch);
    fprintf(f, "#   optimizer steps per epoch               %d (x %d epochs = %lld steps)\n",
            p->steps_per_epoch, c->num_epochs, (long long)p->steps_per_epoch * c->num_epochs);
    fprintf(f, "#   micro-batches per rank per step         %d\n", p->micro_batches);
    fprintf(f, "#   rank  capacity  samples/step  first\n");
    for (int r = 0; r < p->world; r++)
        fprintf(f, "#   %4d  %8d  %12d  %5d\n", r, p->capacity[r], p->share[r], p->first[r]);
    fprintf(f, "# run directory: %s/%s\n", c->logdir, c->run_name[0] ? c->run_name : "<config file name>");
}
