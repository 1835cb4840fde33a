/* svg_chart.h: line charts as inline SVG for the run report (no script, no
 * fonts or files from elsewhere): one or more series over a shared x axis,
 * each optionally with a shaded band y +- band (a reward's std), axes with
 * round-number ticks, a legend. Non-finite values (a skipped step's NaN loss)
 * break the line instead of bending the scale. docs/report.md. */
#ifndef AP_REPORT_SVG_CHART_H
#define AP_REPORT_SVG_CHART_H

#include "report/strbuf.h"

typedef struct ap_series {
    const char *name;   /* legend text */
    const char *color;  /* CSS colour, e.g. "#1f77b4" */
    const double *x;    /* (n) */
    const double *y;    /* (n) */
    const double *band; /* (n) half-width of the band around y, or NULL */
    int n;
} ap_series;

/* Append <figure class="chart"><svg ...>...</svg><figcaption>title</figcaption></figure>.
 * Each series' line is a <polyline class="series" data-name=NAME
 * data-points=K> (K: its finite points, summed over the line's pieces). A
 * chart with no finite value says so in place of the plot. */
void ap_svg_chart(ap_sb *b, const char *title, const char *xlabel, const ap_series *s, int ns);

#endif
