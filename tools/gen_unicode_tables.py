#!/usr/bin/env python3
"""Generates src/text/unicode_data.c: the Unicode tables of the CLIP tokenizers.

Usage: tools/gen_unicode_tables.py   (re-executes itself in .venv-ref)

Every table is measured on the reference environment itself (Python 3.11
str methods, the `regex` module and `ftfy` pinned in tools/requirements-ref.txt)
by testing each code point against the very expressions the tokenizers use,
so the C classification is exact by construction, not re-derived from the
Unicode data files:

  letter   (?i)[\\p{L}]            HF/open_clip pre-tokenizer pattern
  number   (?i)[\\p{N}]
  other    (?i)[^\\s\\p{L}\\p{N}]
  rspace   \\s of the regex module  whitespace_clean's re.sub(r"\\s+", " ")
  pyspace  str.isspace()           str.strip()
  lower    str.lower() per code point (U+0130 and final sigma handled in C)
  cased / case_ignorable           Python's Final_Sigma context, measured by
                                   lower-casing "c\u03a3" and "Ac\u03a3"
  re_digit \\d of Python's re (ftfy's terminal-escape pattern)
  html_invalid, html_charref   html.unescape's numeric reference fix-ups
  fold     non-ASCII code points that (?i) matches against an ASCII letter
  ftfy     fix_c1_controls, fix_latin_ligatures, fix_character_width,
           remove_control_chars tables, and the HTML5 entity table used by
           ftfy.fixes.unescape_html and html.unescape.
"""
import html
import html.entities
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "text" / "unicode_data.c"


def in_refenv():
    return pathlib.Path(sys.prefix).resolve() == (ROOT / ".venv-ref").resolve()


def ranges(pred):
    out, start = [], None
    for cp in range(0x110000 + 1):
        ok = cp <= 0x10FFFF and not (0xD800 <= cp <= 0xDFFF) and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def merge_surrogate_gap(rs):
    """Surrogates never reach the C side; join ranges split only by them."""
    out = []
    for a, b in rs:
        if out and out[-1][1] == 0xD7FF and a == 0xE000:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def c_str(s):
    """C string literal: printable characters raw (UTF-8 source), the rest as
    escapes; an escape is closed with "" so following hex digits can't join it."""
    out = ""
    for ch in s:
        cp = ord(ch)
        if cp < 0x20 or cp == 0x7F or 0x80 <= cp < 0xA0 or ch in '"\\?' or not ch.isprintable():
            out += "".join('\\x%02x""' % b for b in ch.encode("utf-8"))
        else:
            out += ch
    return '"' + out + '"'


def emit_ranges(f, name, rs):
    f.write(f"const ap_uc_range ap_uc_{name}[] = {{\n")
    line = "   "
    for a, b in rs:
        item = f" {{0x{a:X}, 0x{b:X}}},"
        if len(line) + len(item) > 96:
            f.write(line + "\n")
            line = "   "
        line += item
    f.write(line + "\n};\n")
    f.write(f"const int ap_uc_{name}_n = {len(rs)};\n\n")


def lower_runs():
    """(start, end, step, delta): lower(c) = c + delta for c = start, start+step, ..end."""
    pairs = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or cp == 0x130:
            continue
        lo = chr(cp).lower()
        assert len(lo) == 1, (hex(cp), lo)
        if ord(lo) != cp:
            pairs.append((cp, ord(lo) - cp))
    runs = []
    for cp, d in pairs:
        if runs:
            s, e, st, dd = runs[-1]
            if dd == d and (cp - e == st or (s == e and cp - e in (1, 2))):
                runs[-1] = (s, cp, cp - s if s == e else st, d)
                continue
        runs.append((cp, cp, 1, d))
    return runs, len(pairs)


def main():
    if not in_refenv():
        py = subprocess.check_output([str(ROOT / "tools" / "refenv")], text=True).strip()
        os.execv(py, [py, str(pathlib.Path(__file__).resolve())] + sys.argv[1:])
    import re

    import ftfy
    import ftfy.chardata as cd
    import regex
    import unicodedata

    pl = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    pn = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    po = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    ps = regex.compile(r"\s")
    sig = "\u03a3"
    tables = {
        "letter": ranges(lambda c: pl.match(chr(c)) is not None),
        "number": ranges(lambda c: pn.match(chr(c)) is not None),
        "other": ranges(lambda c: po.match(chr(c)) is not None),
        "rspace": ranges(lambda c: ps.match(chr(c)) is not None),
        "pyspace": ranges(lambda c: chr(c).isspace()),
        "cased": ranges(lambda c: (chr(c) + sig).lower()[-1] == "\u03c2"),
        "case_ignorable": ranges(lambda c: ("A" + chr(c) + sig).lower()[-1] == "\u03c2"
                                 and (chr(c) + sig).lower()[-1] != "\u03c2"),
        "ftfy_control": ranges(lambda c: c in cd.CONTROL_CHARS),
        "re_digit": ranges(lambda c: re.match(r"\d", chr(c)) is not None),
        "html_invalid": ranges(lambda c: c in html._invalid_codepoints),
    }
    tables = {k: merge_surrogate_gap(v) for k, v in tables.items()}
    runs, npairs = lower_runs()

    fold = []
    for letter in "abcdefghijklmnopqrstuvwxyz":
        p = regex.compile(letter, regex.IGNORECASE)
        for cp in range(0x80, 0x110000):
            if not (0xD800 <= cp <= 0xDFFF) and p.match(chr(cp)):
                fold.append((cp, letter))

    c1 = [ord(bytes([b]).decode("sloppy-windows-1252")) for b in range(0x80, 0xA0)]
    assert all(ftfy.fixes.fix_c1_controls(chr(b)) == chr(c1[b - 0x80]) for b in range(0x80, 0xA0))
    lig = sorted(cd.LIGATURES.items())
    width = sorted(cd.WIDTH_MAP.items())

    # html.unescape knows every key of html5 (with and without ';');
    # ftfy.unescape_html knows '&' + key for the keys ending in ';', plus
    # upper-cased variants (HTML_ENTITIES). Both lists sorted for bsearch.
    h5 = sorted((k, v) for k, v in html.entities.html5.items())
    # ftfy's table = the html5 keys ending in ';' plus upper-cased variants;
    # only the variants are stored (ftfy_upper), the rest is looked up in html5.
    ft = sorted((k[1:], v) for k, v in cd.HTML_ENTITIES.items()
                if k[1:] not in html.entities.html5)
    assert all(k.endswith(";") for k, _ in ft)
    assert {k[1:] for k in cd.HTML_ENTITIES} == {k for k, _ in ft} | {
        k for k in html.entities.html5 if k.endswith(";")}

    with open(OUT, "w") as f:
        f.write("/* unicode_data.c: GENERATED by tools/gen_unicode_tables.py from the\n"
                " * reference environment (Python %s, unicodedata %s, regex %s, ftfy %s).\n"
                " * Do not edit; rerun the generator. Meaning of each table: unicode.h. */\n"
                % (sys.version.split()[0], unicodedata.unidata_version, regex.__version__,
                   ftfy.__version__))
        f.write('#include "text/unicode.h"\n\n')
        for k, v in tables.items():
            emit_ranges(f, k, v)
        f.write("const ap_uc_lower_run ap_uc_lower[] = {\n")
        for s, e, st, d in runs:
            f.write(f"    {{0x{s:X}, 0x{e:X}, {st}, {d}}},\n")
        f.write(f"}};\nconst int ap_uc_lower_n = {len(runs)}; /* {npairs} code points */\n\n")
        f.write("const ap_uc_map ap_uc_fold_ascii[] = {\n")
        for cp, letter in sorted(fold):
            f.write(f"    {{0x{cp:X}, \"{letter}\"}},\n")
        f.write(f"}};\nconst int ap_uc_fold_ascii_n = {len(fold)};\n\n")
        f.write("const ap_uc_map ap_uc_html_charref[] = {\n")
        for cp, v in sorted(html._invalid_charrefs.items()):
            f.write(f"    {{0x{cp:X}, {c_str(v)}}},\n")
        f.write(f"}};\nconst int ap_uc_html_charref_n = {len(html._invalid_charrefs)};\n\n")
        f.write("const uint32_t ap_uc_c1_cp1252[32] = {\n   ")
        f.write("".join(f" 0x{c:X}," for c in c1) + "\n};\n\n")
        for name, items in (("ligature", lig), ("width", width)):
            f.write(f"const ap_uc_map ap_uc_{name}[] = {{\n")
            for cp, s in items:
                f.write(f"    {{0x{cp:X}, {c_str(s)}}},\n")
            f.write(f"}};\nconst int ap_uc_{name}_n = {len(items)};\n\n")
        for name, items in (("html5", h5), ("ftfy_upper", ft)):
            f.write(f"const ap_uc_entity ap_uc_{name}[] = {{\n")
            line = "   "
            for k, v in items:
                item = f" {{{c_str(k)}, {c_str(v)}}},"
                if len(line) + len(item) > 96:
                    f.write(line + "\n")
                    line = "   "
                line += item
            f.write(line + "\n};\n")
            f.write(f"const int ap_uc_{name}_n = {len(items)};\n\n")
    sizes = {k: len(v) for k, v in tables.items()}
    print(f"wrote {OUT.relative_to(ROOT)}: ranges {sizes}, lower runs {len(runs)}, "
          f"fold {fold}, html5 {len(h5)}, ftfy upper-case entities {len(ft)}")


if __name__ == "__main__":
    main()
