/* manifest.h: compare a model's declared parameters (names, shapes, order,
 * count) with a real-size manifest tests/fixtures/manifests/<name>.txt
 * (generated from the reference libraries: "<key> <dtype> <dims|->" lines in
 * state-dict order). Header-only helper for the model tests. */
#ifndef AP_TEST_MANIFEST_H
#define AP_TEST_MANIFEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/weights.h"
#include "testutil.h"

/* Lines of the manifest whose key starts with one of the prefixes (NULL-
 * terminated; NULL = all), skipping int64 buffers (position_ids), must equal
 * the declared slots one for one. expect_params: parameter count docs/keys.md
 * states (0 = do not check). */
static inline void tu_manifest_check(const char *what, const ap_params *p, const char *file,
                                     const char *const *prefixes, long long expect_params) {
    const char *dir = tu_fixtures_dir();
    char path[1024], line[1024];
    if (!dir) {
        tu_check(0, "%s: AP_FIXTURES_DIR is not set", what);
        return;
    }
    snprintf(path, sizeof path, "%s/manifests/%s", dir, file);
    FILE *f = fopen(path, "r");
    if (!tu_check(f != NULL, "%s: open %s", what, path)) return;
    int i = 0, bad = 0, rows = 0;
    long long total = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char key[512], dtype[32], dims[256];
        if (sscanf(line, "%511s %31s %255s", key, dtype, dims) != 3) continue;
        if (strcmp(dtype, "float32") != 0) continue; /* int64 buffers: ignored by loaders */
        int take = prefixes == NULL;
        for (const char *const *q = prefixes; q && *q; q++)
            if (strncmp(key, *q, strlen(*q)) == 0) take = 1;
        if (!take) continue;
        rows++;
        char got[256] = "", *o = got;
        if (i < p->count) {
            const ap_param *s = &p->items[i];
            if (s->t.ndim == 0) snprintf(got, sizeof got, "-");
            for (int d = 0; d < s->t.ndim; d++)
                o += snprintf(o, sizeof got - (size_t)(o - got), "%s%lld", d ? "," : "",
                              (long long)s->t.shape[d]);
            total += ap_numel(&s->t);
        }
        if (i >= p->count || strcmp(p->items[i].name, key) || strcmp(got, dims)) {
            if (bad++ < 5)
                printf("    %s: slot %d: manifest %s (%s), declared %s (%s)\n", what, i, key, dims,
                       i < p->count ? p->items[i].name : "nothing", got);
        }
        i++;
    }
    fclose(f);
    for (; i < p->count; i++) {
        if (bad++ < 5) printf("    %s: extra declared slot %s\n", what, p->items[i].name);
    }
    tu_check(bad == 0 && rows == p->count,
             "%s: %d declared slots match %s (%d rows: names, shapes, order)", what, p->count, file,
             rows);
    if (expect_params)
        tu_check(total == expect_params && (long long)p->total == expect_params,
                 "%s: %lld parameters declared, docs state %lld", what, (long long)p->total,
                 expect_params);
}

#endif
