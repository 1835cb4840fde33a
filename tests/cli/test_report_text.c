/* test_report_text.c: the run report's text helpers (src/report/strbuf.h,
 * svg_chart.h): base64 against RFC 4648's test vectors and a round trip of
 * every byte value; HTML escaping of markup characters, control characters
 * and invalid UTF-8 (a prompt is user text); charts with NaN gaps, a single
 * point, a constant series and no finite value. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report/strbuf.h"
#include "report/svg_chart.h"
#include "testutil.h"

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static void test_base64(void) {
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        ap_sb b = {0};
        ap_sb_base64(&b, (const unsigned char *)in[i], strlen(in[i]));
        tu_check(!strcmp(b.s ? b.s : "", want[i]), "base64(\"%s\") = \"%s\", RFC 4648: \"%s\"", in[i],
                 b.s ? b.s : "", want[i]);
        ap_sb_free(&b);
    }
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    ap_sb b = {0};
    ap_sb_base64(&b, all, 256);
    /* decode and compare */
    const char *k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char out[258];
    size_t n = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < b.len && b.s[i] != '='; i++) {
        v = v << 6 | (unsigned)(strchr(k, b.s[i]) - k);
        bits += 6;
        if (bits >= 8) bits -= 8, out[n++] = (unsigned char)(v >> bits);
    }
    tu_check(b.len == 344 && n == 256 && !memcmp(out, all, 256),
             "base64 of bytes 0..255: %zu characters (344 expected), decodes to %zu equal bytes", b.len, n);
    ap_sb_free(&b);
}

static void test_html(void) {
    ap_sb b = {0};
    ap_sb_html(&b, "<script>alert(\"x\")</script> & 'y'");
    tu_check(!strcmp(b.s, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"),
             "markup escaped: %s", b.s);
    ap_sb_free(&b);
    ap_sb_html(&b, "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb1"); /* valid 2-, 3-, 4-byte UTF-8 */
    tu_check(!strcmp(b.s, "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\xb1"), "valid UTF-8 kept: %s", b.s);
    ap_sb_free(&b);
    ap_sb_html(&b, "a\xff" "b\xc3(c\xed\xa0\x80" "d\x01" "e"); /* invalid byte, truncated, surrogate, control */
    tu_check(!strcmp(b.s, "a\xef\xbf\xbd" "b\xef\xbf\xbd(c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                          "d\xef\xbf\xbd" "e"),
             "invalid UTF-8 and control characters become U+FFFD: %s", b.s);
    ap_sb_free(&b);
    ap_sb_printf(&b, "%d-%s", 42, "x");
    ap_sb_put(&b, "yz", 2);
    tu_check(!strcmp(b.s, "42-xyz") && b.len == 6 && ap_sb_ok(&b), "printf + put: %s", b.s);
    ap_sb_free(&b);
}

static void test_chart(void) {
    double x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {1, 2, NAN, 4, 5, INFINITY}, sd[6] = {0.1, 0.1, 0.1, 0.1, NAN, 0.1};
    ap_sb b = {0};
    ap_series s = {"loss <&>", "#2ca02c", x, y, sd, 6};
    ap_svg_chart(&b, "a \"chart\"", "step", &s, 1);
    tu_check(count(b.s, "<polyline class=\"series\"") == 2 && strstr(b.s, "data-points=\"4\""),
             "NaN and inf break the line: %d pieces, 4 finite points",
             count(b.s, "<polyline class=\"series\""));
    /* band runs need finite x, y and std: steps 1-2 make one; step 4 alone
     * (3: NaN y, 5: NaN std) is too short to shade */
    tu_check(count(b.s, "<polygon class=\"band\"") == 1, "band pieces: %d (expected 1: steps 1-2)",
             count(b.s, "<polygon class=\"band\""));
    tu_check(strstr(b.s, "loss &lt;&amp;&gt;") && strstr(b.s, "a &quot;chart&quot;") && !strstr(b.s, "<&>"),
             "legend and title escaped");
    tu_check(!strstr(b.s, "nan") && !strstr(b.s, "inf"), "no nan/inf written into the SVG");
    ap_sb_free(&b);
    double one = 3, c[3] = {0.5, 0.5, 0.5}, cx[3] = {0, 1, 2};
    ap_series s1 = {"one", "#000", &one, &one, NULL, 1};
    ap_series s2 = {"const", "#111", cx, c, NULL, 3};
    ap_svg_chart(&b, "single", "step", &s1, 1);
    ap_svg_chart(&b, "constant", "step", &s2, 1);
    tu_check(count(b.s, "<circle") == 4 && !strstr(b.s, "nan") && !strstr(b.s, "inf"),
             "a single point and a constant series: %d markers (4), finite coordinates", count(b.s, "<circle"));
    ap_sb_free(&b);
    double none[2] = {NAN, NAN};
    ap_series s3 = {"empty", "#000", cx, none, NULL, 2};
    ap_svg_chart(&b, "empty", "step", &s3, 1);
    tu_check(strstr(b.s, "no finite values yet") && !strstr(b.s, "<svg"), "no finite value: a note, no plot");
    ap_sb_free(&b);
}

int main(void) {
    printf("test_report_text: base64, HTML escaping, SVG charts of the run report\n");
    test_base64();
    test_html();
    test_chart();
    return tu_exit();
}
