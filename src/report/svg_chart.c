/* svg_chart.c: inline SVG line charts with std bands (svg_chart.h). */
#include "report/svg_chart.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { W = 440, H = 260, ML = 62, MR = 12, MT = 12, MB = 40 };

/* A round tick step (1, 2 or 5 times a power of ten) giving about 5 ticks. */
static double tick_step(double span) {
    if (!(span > 0)) return 1.0;
    double raw = span / 5.0, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * p;
}

/* Widen [*lo, *hi] to a non-empty range with a little margin. */
static void pad_range(double *lo, double *hi) {
    if (*hi - *lo <= 1e-12 * (fabs(*hi) + fabs(*lo)) || *hi <= *lo) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.05 : 1.0;
        *lo -= d;
        *hi += d;
    } else {
        double d = (*hi - *lo) * 0.04;
        *lo -= d;
        *hi += d;
    }
}

static void fmt_num(char *out, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0.0;
    snprintf(out, cap, "%.4g", v);
}

void ap_svg_chart(ap_sb *b, const char *title, const char *xlabel, const ap_series *s, int ns) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], y = s[k].y[i], d = s[k].band ? s[k].band[i] : 0.0;
            if (!isfinite(x) || !isfinite(y)) continue;
            if (!isfinite(d)) d = 0.0;
            x0 = fmin(x0, x), x1 = fmax(x1, x);
            y0 = fmin(y0, y - fabs(d)), y1 = fmax(y1, y + fabs(d));
        }
    ap_sb_printf(b, "<figure class=\"chart\">\n");
    if (!(x0 <= x1)) {
        ap_sb_printf(b, "<p class=\"nodata\">no finite values yet</p>");
        ap_sb_printf(b, "<figcaption>");
        ap_sb_html(b, title);
        ap_sb_printf(b, "</figcaption></figure>\n");
        return;
    }
    pad_range(&y0, &y1);
    if (x1 <= x0) x0 -= 1.0, x1 += 1.0;
    const double pw = W - ML - MR, ph = H - MT - MB;
#define PX(x) (ML + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (MT + (y1 - (y)) / (y1 - y0) * ph)
    ap_sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
                    "height=\"%d\" role=\"img\"><title>", W, H, W, H);
    ap_sb_html(b, title);
    ap_sb_printf(b, "</title>\n<rect class=\"plot\" x=\"%d\" y=\"%d\" width=\"%g\" height=\"%g\" "
                    "fill=\"#fff\" stroke=\"#999\"/>\n", ML, MT, pw, ph);
    /* y ticks and grid */
    double st = tick_step(y1 - y0);
    char num[64];
    for (double t = ceil(y0 / st) * st; t <= y1 + st * 1e-9; t += st) {
        double py = PY(t);
        fmt_num(num, sizeof num, t, st);
        ap_sb_printf(b, "<line x1=\"%d\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                        "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" "
                        "fill=\"#333\">%s</text>\n", ML, ML + pw, py, py, ML - 5, py + 4, num);
    }
    /* x ticks: integer steps */
    double sx = tick_step(x1 - x0);
    if (sx < 1.0) sx = 1.0;
    for (double t = ceil(x0 / sx) * sx; t <= x1 + sx * 1e-9; t += sx) {
        double px = PX(t);
        fmt_num(num, sizeof num, t, sx);
        ap_sb_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%g\" stroke=\"#999\"/>"
                        "<text x=\"%.1f\" y=\"%g\" font-size=\"11\" text-anchor=\"middle\" "
                        "fill=\"#333\">%s</text>\n", px, px, MT + (int)ph, MT + ph + 5, px,
                     MT + ph + 18, num);
    }
    ap_sb_printf(b, "<text x=\"%g\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" "
                    "fill=\"#333\">", ML + pw / 2, H - 6);
    ap_sb_html(b, xlabel);
    ap_sb_printf(b, "</text>\n");
    for (int k = 0; k < ns; k++) {
        const ap_series *e = &s[k];
        /* the band: one polygon per run of finite points (upper edge forward, lower back) */
        for (int i = 0; e->band && i < e->n;) {
            int j = i;
            while (j < e->n && isfinite(e->x[j]) && isfinite(e->y[j]) && isfinite(e->band[j])) j++;
            if (j - i >= 2) {
                ap_sb_printf(b, "<polygon class=\"band\" fill=\"%s\" fill-opacity=\"0.18\" "
                                "stroke=\"none\" points=\"", e->color);
                for (int q = i; q < j; q++)
                    ap_sb_printf(b, "%.1f,%.1f ", PX(e->x[q]), PY(e->y[q] + fabs(e->band[q])));
                for (int q = j - 1; q >= i; q--)
                    ap_sb_printf(b, "%.1f,%.1f ", PX(e->x[q]), PY(e->y[q] - fabs(e->band[q])));
                ap_sb_printf(b, "\"/>\n");
            }
            i = j > i ? j : i + 1;
        }
        int finite = 0;
        for (int i = 0; i < e->n; i++) finite += isfinite(e->x[i]) && isfinite(e->y[i]);
        ap_sb_printf(b, "<g class=\"line\" data-name=\"");
        ap_sb_html(b, e->name);
        ap_sb_printf(b, "\" data-points=\"%d\">", finite);
        for (int i = 0; i < e->n;) {
            int j = i;
            while (j < e->n && isfinite(e->x[j]) && isfinite(e->y[j])) j++;
            if (j > i) {
                ap_sb_printf(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
                                "stroke-width=\"2\" points=\"", e->color);
                for (int q = i; q < j; q++) ap_sb_printf(b, "%.1f,%.1f ", PX(e->x[q]), PY(e->y[q]));
                ap_sb_printf(b, "\"/>");
            }
            i = j > i ? j : i + 1;
        }
        /* markers where points are few enough to tell apart (evaluations) */
        for (int i = 0; i < e->n && finite <= 60; i++)
            if (isfinite(e->x[i]) && isfinite(e->y[i]))
                ap_sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", PX(e->x[i]),
                             PY(e->y[i]), e->color);
        ap_sb_printf(b, "</g>\n");
    }
    /* legend, over a translucent white box so the lines under it stay visible */
    size_t longest = 0;
    for (int k = 0; k < ns; k++) {
        size_t l = strlen(s[k].name) + (s[k].band ? 18 : 0);
        if (l > longest) longest = l;
    }
    if (ns > 0)
        ap_sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%d\" fill=\"#fff\" "
                        "fill-opacity=\"0.8\"/>\n", ML + 4, MT + 4, 32 + 6.5 * (double)longest, 16 * ns + 4);
    for (int k = 0; k < ns; k++) {
        ap_sb_printf(b, "<rect x=\"%g\" y=\"%d\" width=\"14\" height=\"4\" fill=\"%s\"/>"
                        "<text x=\"%g\" y=\"%d\" font-size=\"12\" fill=\"#333\">", ML + 10.0,
                     MT + 12 + 16 * k, s[k].color, ML + 30.0, MT + 17 + 16 * k);
        ap_sb_html(b, s[k].name);
        ap_sb_printf(b, "%s</text>\n", s[k].band ? " (band: &#177; std)" : "");
    }
#undef PX
#undef PY
    ap_sb_printf(b, "</svg>\n<figcaption>");
    ap_sb_html(b, title);
    ap_sb_printf(b, "</figcaption></figure>\n");
}
