/* lora_layout.c: LoRA key names in the attn-procs, peft and kohya layouts
 * (lora_layout.h, docs/lora.md §6-7). */
#include "io/lora_layout.h"

#include <stdio.h>
#include <string.h>

#include "core/err.h"

static const char *const layout_names[AP_LORA_LAYOUT_COUNT] = {"diffusers-attn-procs", "peft",
                                                               "kohya"};

/* Per projection: its name in each layout (before the part suffix). */
static const struct {
    const char *procs; /* "<module>.processor.<procs>_lora.<down|up>.weight" */
    const char *peft;  /* "unet.<module>.<peft>.lora_<A|B>.weight" */
    const char *kohya; /* "lora_unet_<module_>_<kohya>.lora_<down|up>.weight" */
} proj_names[AP_LORA_PROJ_COUNT] = {
    {"to_q", "to_q", "to_q"},
    {"to_k", "to_k", "to_k"},
    {"to_v", "to_v", "to_v"},
    {"to_out", "to_out.0", "to_out_0"},
};

/* Part suffixes per layout (NULL: the layout has no such entry). */
static const char *const part_suffix[AP_LORA_LAYOUT_COUNT][3] = {
    {"_lora.down.weight", "_lora.up.weight", NULL},
    {".lora_A.weight", ".lora_B.weight", NULL},
    {".lora_down.weight", ".lora_up.weight", ".alpha"},
};

/* The components of an attention module path of the diffusers UNet, longest
 * first where one is a prefix of another; kohya joins them with '_'. */
static const char *const module_words[] = {"transformer_blocks", "down_blocks", "up_blocks",
                                           "mid_block", "attentions", "attn1", "attn2", NULL};

const char *ap_lora_layout_name(ap_lora_layout l) {
    return l >= 0 && l < AP_LORA_LAYOUT_COUNT ? layout_names[l] : "?";
}

int ap_lora_layout_parse(const char *s, ap_lora_layout *out) {
    for (int l = 0; l < AP_LORA_LAYOUT_COUNT; l++)
        if (!strcmp(s, layout_names[l])) return *out = (ap_lora_layout)l, AP_OK;
    return ap_fail("LoRA layout '%s': expected diffusers-attn-procs, peft or kohya", s);
}

static int ends_with(const char *s, size_t n, const char *suf) {
    size_t m = strlen(suf);
    return n >= m && !memcmp(s + n - m, suf, m);
}

/* Does s[0..n) look like "<word>.<digits>...attn<1|2>" built of module_words
 * and numbers joined by sep? Writes the dotted form into out. */
static int module_ok(const char *s, size_t n, char sep, char *out, size_t cap) {
    size_t i = 0, o = 0;
    int words = 0, last_attn = 0;
    while (i < n) {
        size_t len = 0;
        last_attn = 0;
        for (int w = 0; module_words[w]; w++) {
            size_t m = strlen(module_words[w]);
            if (i + m <= n && !memcmp(s + i, module_words[w], m) && (i + m == n || s[i + m] == sep)) {
                len = m;
                last_attn = !strncmp(module_words[w], "attn", 4);
                break;
            }
        }
        if (!len)
            while (i + len < n && s[i + len] >= '0' && s[i + len] <= '9') len++;
        if (!len || (i + len < n && s[i + len] != sep)) return -1;
        if (o + len + 2 > cap) return -1;
        if (words++) out[o++] = '.';
        memcpy(out + o, s + i, len);
        o += len;
        i += len + (i + len < n);
    }
    out[o] = 0;
    return words >= 2 && last_attn ? 0 : -1;
}

int ap_lora_key_parse(ap_lora_layout l, const char *key, ap_lora_key *k) {
    if (l < 0 || l >= AP_LORA_LAYOUT_COUNT) return -1;
    const char *s = key;
    size_t n = strlen(s);
    if (l == AP_LORA_ATTN_PROCS && !strncmp(s, "unet.", 5)) s += 5, n -= 5;
    if (l == AP_LORA_PEFT) {
        if (strncmp(s, "unet.", 5)) return -1;
        s += 5, n -= 5;
    }
    if (l == AP_LORA_KOHYA) {
        if (strncmp(s, "lora_unet_", 10)) return -1;
        s += 10, n -= 10;
    }
    int part = -1;
    for (int p = 0; p < 3 && part < 0; p++)
        if (part_suffix[l][p] && ends_with(s, n, part_suffix[l][p])) part = p, n -= strlen(part_suffix[l][p]);
    if (part < 0) return -1;
    /* n now ends at the projection name, preceded by its separator */
    const char *tail = l == AP_LORA_ATTN_PROCS ? ".processor." : l == AP_LORA_PEFT ? "." : "_";
    for (int p = 0; p < AP_LORA_PROJ_COUNT; p++) {
        const char *pn = l == AP_LORA_ATTN_PROCS ? proj_names[p].procs
                         : l == AP_LORA_PEFT     ? proj_names[p].peft
                                                 : proj_names[p].kohya;
        char suf[64];
        snprintf(suf, sizeof suf, "%s%s", tail, pn);
        if (!ends_with(s, n, suf)) continue;
        size_t mlen = n - strlen(suf);
        if (module_ok(s, mlen, l == AP_LORA_KOHYA ? '_' : '.', k->module, sizeof k->module))
            return -1;
        k->proj = p;
        k->part = (ap_lora_part)part;
        return 0;
    }
    return -1;
}

int ap_lora_key_format(ap_lora_layout l, const ap_lora_key *k, char *out, size_t cap) {
    if (l < 0 || l >= AP_LORA_LAYOUT_COUNT || k->proj < 0 || k->proj >= AP_LORA_PROJ_COUNT)
        return ap_fail("LoRA key: layout %d / projection %d out of range", (int)l, k->proj);
    const char *suf = part_suffix[l][k->part];
    if (!suf) return ap_fail("LoRA key %s: the %s layout stores no alpha", k->module, layout_names[l]);
    int w;
    if (l == AP_LORA_ATTN_PROCS) {
        w = snprintf(out, cap, "%s.processor.%s%s", k->module, proj_names[k->proj].procs, suf);
    } else if (l == AP_LORA_PEFT) {
        w = snprintf(out, cap, "unet.%s.%s%s", k->module, proj_names[k->proj].peft, suf);
    } else {
        char mod[sizeof k->module];
        snprintf(mod, sizeof mod, "%s", k->module);
        for (char *c = mod; *c; c++)
            if (*c == '.') *c = '_';
        w = snprintf(out, cap, "lora_unet_%s_%s%s", mod, proj_names[k->proj].kohya, suf);
    }
    if (w < 0 || (size_t)w >= cap) return ap_fail("LoRA key of %s: longer than %zu bytes", k->module, cap);
    return AP_OK;
}

/* The layout a key looks like, by its markers only (for messages and for
 * files whose keys are not all adapters this port has). -1: none. */
static int looks_like(const char *key) {
    if (!strncmp(key, "lora_unet_", 10) || !strncmp(key, "lora_te", 7)) return AP_LORA_KOHYA;
    if (strstr(key, ".processor.")) return AP_LORA_ATTN_PROCS;
    if (strstr(key, ".lora_A.") || strstr(key, ".lora_B.") || !strncmp(key, "unet.", 5) ||
        !strncmp(key, "text_encoder.", 13))
        return AP_LORA_PEFT;
    return -1;
}

int ap_lora_layout_detect(const char *const *keys, int n, const char *file, ap_lora_layout *out) {
    if (n <= 0) return ap_fail("%s: holds no tensors; expected LoRA matrices", file);
    int l = -1;
    for (int i = 0; i < n && l < 0; i++) l = looks_like(keys[i]);
    if (l < 0)
        return ap_fail("%s: key '%s' is of no LoRA layout this port knows; expected "
                       "diffusers-attn-procs (<attn>.processor.to_q_lora.down.weight), peft "
                       "(unet.<attn>.to_q.lora_A.weight) or kohya "
                       "(lora_unet_<attn>_to_q.lora_down.weight)",
                       file, keys[0]);
    char list[1024] = "";
    size_t used = 0;
    int bad = 0;
    ap_lora_key k;
    for (int i = 0; i < n; i++) {
        if (!ap_lora_key_parse((ap_lora_layout)l, keys[i], &k)) continue;
        if (bad++ < 4 && used < sizeof list - 1)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", bad > 1 ? ", " : "",
                                     keys[i]);
        if (used >= sizeof list) used = sizeof list - 1;
    }
    if (bad)
        return ap_fail("%s: %d of %d keys are no UNet attention adapter of the %s layout (%s%s); "
                       "this port adapts to_q, to_k, to_v and to_out.0 of the UNet's attentions "
                       "only (docs/lora.md §1)",
                       file, bad, n, layout_names[l], list, bad > 4 ? ", ..." : "");
    *out = (ap_lora_layout)l;
    return AP_OK;
}
