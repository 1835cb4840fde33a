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
  re_word  \\w of Python's re (ftfy's badness expression)
  mojibake ftfy's fix_encoding: the character classes of ftfy.badness.BADNESS_RE
           and chardata.UTF8_DETECTOR_RE as one bit mask per code point, the
           alternatives of BADNESS_RE as sequences of class bits (checked
           against BADNESS_RE itself on generated strings), and the byte ->
           character maps of chardata.CHARMAP_ENCODINGS (ftfy's sloppy codecs).
  nfc      unicodedata.normalize("NFC"): canonical combining classes, one-level
           canonical decompositions and the primary composites by pair.
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


# ftfy.badness.BADNESS_RE as data: one list of positions per alternative, each
# position the body of a regex character class ({name} = a category of
# ftfy.badness.MOJIBAKE_CATEGORIES) or one of the special classes below.
# "[a-z]\s?[ÃÂ][ ]" is written as its two expansions and "^" as a flag.
SPECIAL = {".": 0, r"\s": 1, r"\w": 2, "^A-Za-z": 3}  # bit numbers, computed in C
A_ACC = "{lower_accented}{upper_accented}"
BADNESS_ALTS = [
    ["{c1}"],
    ["{bad}" + A_ACC + "{box}{start_punctuation}{end_punctuation}{currency}{numeric}", "{bad}"],
    ["a-zA-Z", "{lower_common}{upper_common}", "{bad}"],
    ["{bad}", A_ACC + "{box}{start_punctuation}{end_punctuation}{currency}{numeric}"],
    ["{lower_accented}{lower_common}{box}{end_punctuation}{currency}{numeric}", "{upper_accented}"],
    ["{box}{end_punctuation}{currency}{numeric}", "{lower_accented}"],
    ["{lower_accented}{box}{end_punctuation}", "{currency}"],
    [r"\s", "{upper_accented}", "{currency}"],
    ["{upper_accented}{box}", "{numeric}"],
    [A_ACC + "{box}{currency}{end_punctuation}", "{start_punctuation}", "{numeric}"],
    [A_ACC + "{currency}{numeric}{box}", "{end_punctuation}", "{start_punctuation}"],
    ["{currency}{numeric}{box}", "{start_punctuation}"],
    ["a-z", "{upper_accented}", "{start_punctuation}{currency}"],
    ["{box}", "{kaomoji}"],
    [A_ACC + "{currency}{numeric}{start_punctuation}{end_punctuation}", "{box}"],
    ["{box}", "{end_punctuation}"],
    [A_ACC, "{end_punctuation}", r"\w"],
    ["Œœ", "^A-Za-z"],
    ["ÂÃÎÐ", "€Šš¢£Ÿž\xa0\xad®©°·»{start_punctuation}{end_punctuation}–—´"],
    ["×", "²³"],
    ["ØÙ", "{common}{currency}{bad}{numeric}{start_punctuation}ŸŠ®°µ»"] * 2,
    ["à", "²µ¹¼½¾"],
    ["√", "±∂†≠®™´≤≥¥µø"],
    ["≈", "°¢"],
    ["‚", "Ä", "ìîïòôúùû†°¢π"],
    ["‚", "âó", "àä°ê"],
    ["в", "Ђ"],
    ["ВГРС", "{c1}{bad}{start_punctuation}{end_punctuation}{currency}°µ", "ВГРС"],
    ["Г", "ў", "В", "Ђ", "В", ".", "A-Za-z "],
    ["Ã", "\xa0¡"],
    ["a-z", "ÃÂ", " "],
    ["a-z", r"\s", "ÃÂ", " "],
    ["^", "ÃÂ", " "],
    ["a-z.,?!{end_punctuation}", "Â", " {start_punctuation}{end_punctuation}"],
    ["β", "€", "™\xa0Ά\xad®°"],
    ["ΒΓΞΟ", "{c1}{bad}{start_punctuation}{end_punctuation}{currency}°", "ΒΓΞΟ"],
]
# chardata.UTF8_DETECTOR_RE's classes, fixed bit numbers for the C matcher.
UTF8_CLASSES = ["utf8_first_of_2", "utf8_first_of_3", "utf8_first_of_4", "utf8_continuation",
                "utf8_continuation_strict"]


def mojibake_tables():
    """(bit masks per code point, patterns, class bodies) for fix_encoding."""
    import re

    import ftfy.badness as fb
    import ftfy.chardata as cd

    # Each position is a union of atoms: a category, a run of literal
    # characters or a special class; each atom gets one bit.
    atoms = {}  # atom body (characters of a class) -> bit
    for name in UTF8_CLASSES:
        atoms[cd.UTF8_CLUES[name]] = 4 + len(atoms)
    pats = []
    for alt in BADNESS_ALTS:
        anchored = alt[0] == "^"
        masks_pos = []
        for pos in alt[1:] if anchored else alt:
            if pos in SPECIAL:
                masks_pos.append(1 << SPECIAL[pos])
                continue
            m = 0
            for k, part in enumerate(re.split(r"\{(\w+)\}", pos)):
                if not part:
                    continue
                body = fb.MOJIBAKE_CATEGORIES[part] if k % 2 else part
                if body not in atoms:
                    atoms[body] = 4 + len(atoms)
                m |= 1 << atoms[body]
            masks_pos.append(m)
        pats.append((anchored, masks_pos))
    assert 4 + len(atoms) <= 64, len(atoms)
    masks = {}
    for body, bit in atoms.items():
        rx = re.compile("[" + body + "]")
        for cp in range(0x10000):
            if rx.match(chr(cp)):
                masks[cp] = masks.get(cp, 0) | (1 << bit)
    assert max(masks) < 0x10000
    # Check: the alternatives, as one regex, find exactly what BADNESS_RE
    # finds, on every pair of characters of the classes (plus ASCII and
    # spaces) and on random strings of 3..8 of them.
    def cls(pos):
        body = pos.format(**fb.MOJIBAKE_CATEGORIES)
        return {".": ".", r"\s": r"\s", r"\w": r"\w", "^A-Za-z": "[^A-Za-z]"}.get(
            body, "[" + body.replace("\\", "\\\\").replace("]", "\\]") + "]")
    mine = re.compile("|".join(("^" if a[0] == "^" else "") + "".join(
        cls(p) for p in (a[1:] if a[0] == "^" else a)) for a in BADNESS_ALTS))
    import random
    alphabet = sorted(chr(c) for c in masks) + list("aAzZ .,?!_1\n\t") + ["\u3000", "\u4e00"]
    for x in alphabet:
        for y in alphabet:
            assert bool(mine.search(x + y)) == bool(fb.BADNESS_RE.search(x + y)), (x, y)
    rng = random.Random(1)
    for _ in range(300000):
        t = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 8)))
        assert bool(mine.search(t)) == bool(fb.BADNESS_RE.search(t)), t
    return masks, pats, len(atoms)


def charmaps():
    """Characters of bytes 0x80..0xFF and then of byte 0x1A in each encoding
    of chardata.CHARMAP_ENCODINGS, checked against Python's encoders."""
    import ftfy.chardata as cd

    out = []
    for enc in cd.CHARMAP_ENCODINGS:
        chars = (bytes(range(0x80, 0x100)) + b"\x1a").decode(enc)
        assert len(set(chars)) == 129 and all(ord(c) >= 0x80 or c == "\x1a" for c in chars[:128])
        for b in list(range(0x80)) + list(range(0x80, 0x100)):
            if b == 0x1A:
                continue
            ch = bytes([b]).decode(enc)
            assert (ch == chr(b)) if b < 0x80 else ch == chars[b - 0x80], (enc, b)
            assert ch.encode(enc) == bytes([b])
        assert chars[128].encode(enc) == b"\x1a"
        out.append((enc, [ord(c) for c in chars]))
    return out


def nfc_tables():
    """Combining classes (ranges), one-level canonical decompositions and the
    primary composites (pairs that NFC composes)."""
    import unicodedata as ud

    ccc, dec, comp = [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = ud.combining(chr(cp))
        if c:
            if ccc and ccc[-1][1] == cp - 1 and ccc[-1][2] == c:
                ccc[-1][1] = cp
            else:
                ccc.append([cp, cp, c])
        d = ud.decomposition(chr(cp))
        if d and not d.startswith("<") and not (0xAC00 <= cp <= 0xD7A3):
            parts = [int(x, 16) for x in d.split()]
            assert len(parts) in (1, 2)
            dec.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
            if len(parts) == 2 and ud.normalize("NFC", chr(cp)) == chr(cp):
                comp.append((parts[0], parts[1], cp))
    return ccc, dec, sorted(comp)


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
        "re_word": ranges(lambda c: re.match(r"\w", chr(c)) is not None),
    }
    assert tables["pyspace"] == ranges(lambda c: re.match(r"\s", chr(c)) is not None), \
        "re's \\s (ftfy's badness) is not str.isspace(): add a table"
    masks, pats, nclasses = mojibake_tables()
    cmaps = charmaps()
    ccc, dec, comp = nfc_tables()
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
        f.write("/* ftfy fix_encoding: class bits (0..3 computed in C, see textclean_encoding.c) */\n")
        f.write("const ap_uc_bits ap_uc_mojibake[] = {\n")
        items = sorted(masks.items())
        for i in range(0, len(items), 3):
            f.write("   " + "".join(f" {{0x{c:X}, 0x{m:X}}}," for c, m in items[i:i + 3]) + "\n")
        f.write(f"}};\nconst int ap_uc_mojibake_n = {len(items)};\n\n")
        f.write("/* ftfy.badness.BADNESS_RE: {anchored at ^, length, class bit per position} */\n")
        f.write("const ap_uc_pattern ap_uc_badness[] = {\n")
        for anchored, mp in pats:
            f.write(f"    {{{int(anchored)}, {len(mp)}, {{{', '.join(f'0x{m:X}' for m in mp)}}}}},\n")
        f.write(f"}};\nconst int ap_uc_badness_n = {len(pats)};\n\n")
        f.write("/* bytes 0x80..0xFF, then byte 0x1A, of ftfy's CHARMAP_ENCODINGS in order */\n")
        f.write(f"const char *const ap_uc_charmap_name[AP_UC_NCHARMAP] = {{\n")
        f.write("   " + "".join(f' "{e}",' for e, _ in cmaps) + "\n};\n")
        f.write("const uint16_t ap_uc_charmap[AP_UC_NCHARMAP][129] = {\n")
        for e, cps in cmaps:
            f.write(f"    {{ /* {e} */\n")
            for i in range(0, 129, 12):
                f.write("       " + "".join(f" 0x{c:X}," for c in cps[i:i + 12]) + "\n")
            f.write("    },\n")
        f.write("};\n\n")
        f.write("/* NFC: canonical combining classes */\n")
        f.write("const ap_uc_range_val ap_uc_ccc[] = {\n")
        for i in range(0, len(ccc), 4):
            f.write("   " + "".join(f" {{0x{a:X}, 0x{b:X}, {v}}}," for a, b, v in ccc[i:i + 4]) + "\n")
        f.write(f"}};\nconst int ap_uc_ccc_n = {len(ccc)};\n\n")
        for name, rows, what in (("decomp", dec, "{cp, first, second or 0}, by cp"),
                                 ("comp", comp, "{first, second, composite}, by pair")):
            f.write(f"/* NFC: {what} */\nconst ap_uc_triple ap_uc_{name}[] = {{\n")
            for i in range(0, len(rows), 4):
                f.write("   " + "".join(f" {{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in rows[i:i + 4])
                        + "\n")
            f.write(f"}};\nconst int ap_uc_{name}_n = {len(rows)};\n\n")
    sizes = {k: len(v) for k, v in tables.items()}
    print(f"wrote {OUT.relative_to(ROOT)}: ranges {sizes}, lower runs {len(runs)}, "
          f"fold {fold}, html5 {len(h5)}, ftfy upper-case entities {len(ft)}, mojibake classes "
          f"{nclasses} over {len(masks)} code points, badness alternatives {len(pats)}, "
          f"charmaps {len(cmaps)}, ccc ranges {len(ccc)}, decompositions {len(dec)}, "
          f"composites {len(comp)}")


if __name__ == "__main__":
    main()
