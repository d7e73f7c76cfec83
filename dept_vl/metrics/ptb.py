"""A pure-Python port of the PTB tokenizer that pycocoevalcap runs in Java.

pycocoevalcap's ``PTBTokenizer`` runs ``edu.stanford.nlp.process.PTBTokenizer -preserveLines
-lowerCase`` from the bundled stanford-corenlp-3.4.1 jar, then drops the tokens in its
``PUNCTUATIONS`` list. This module transcribes the rules of that jar's lexer (CoreNLP v3.4.1,
``src/edu/stanford/nlp/process/PTBLexer.flex``, default options) into Python regexes and applies
them as JFlex does: at each position the longest match wins (trailing context counted), ties go to
the earlier rule. Output is lowercased per token, as ``-lowerCase`` does. Differences can remain for
rare Unicode (the jar predates current Unicode tables) and exotic inputs (SGML, URLs); captions in
the committed Java table (tests/data/metrics/ptb_java.json) tokenise identically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

# The tokens pycocoevalcap.tokenizer.ptbtokenizer drops after tokenising (case-sensitive).
PUNCTUATIONS = ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                ".", "?", "!", ",", ":", "-", "--", "...", ";"]
# Line separators of the Java lexer other than "\n": inside a caption they would split its line.
LINE_BREAKS = re.compile("\r\n?|[\u2028\u2029\x0b\x0c\x85]")


def _char_class(pred: Callable[[str], bool]) -> str:
    ranges, start = [], None
    for cp in range(0x10000):
        ok = not 0xD800 <= cp <= 0xDFFF and pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


_ALPHA = f"[{_char_class(str.isalpha)}]"  # JFlex [:letter:] (BMP only, like the jar)
_UPPER = f"[{_char_class(str.isupper)}]"  # JFlex [:uppercase:]


def _ci(alternatives: str) -> str:
    """A caseless literal alternation (the lexer is %caseless; character classes are not)."""
    return f"(?i:{alternatives})"


# --- Macros of PTBLexer.flex (v3.4.1), in its order and names. ---
SGML = (r"<(?:[!?][A-Za-z-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.-]*(?:[ ]+(?:[A-Za-z][A-Za-z0-9_:.-]*"
        r"|[A-Za-z][A-Za-z0-9_:.-]*[ ]*=[ ]*(?:'[^']*'|\"[^\"]*\")))*[ ]*/?"
        r"|/[A-Za-z][A-Za-z0-9_:.-]*)[ ]*>")
SPMDASH = "&" + _ci("mdash|ndash|md") + ";|[\u0096\u0097\u2013\u2014\u2015]"
SPAMP = "&" + _ci("amp") + ";"
SPPUNC = "&(?:" + _ci("odq|cdq|ht|tl|ur|lr|qc|ql|qr") + "|#[0-9]+);"
SPLET = "&[aeiouAEIOU]" + _ci("acute|grave|uml") + ";"
SPACE = "[ \t\u00a0\u2000-\u200a\u3000]"
NEWLINE = "(?:\r?\n|\r|[\u2028\u2029\x0b\x0c\x85])"
SPACENL = f"(?:{SPACE}|{NEWLINE})"
SENTEND = f"{SPACENL}(?:{SPACENL}|{_UPPER}|{SGML})"
DIGIT = r"[\d\u07c0-\u07c9]"
DATE = f"{DIGIT}{{1,2}}[-/]{DIGIT}{{1,2}}[-/]{DIGIT}{{2,4}}"
NUM = f"(?:{DIGIT}*(?:[.:,\u00ad\u066b\u066c]{DIGIT}+)+|{DIGIT}+)"
NUMBER = f"[-+]?{NUM}"
SUBSUPNUM = "[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)"
FRAC = f"(?:{DIGIT}{{1,4}}[- \u00a0])?{DIGIT}{{1,4}}(?:\\\\?/|\u2044){DIGIT}{{1,4}}"
FRAC2 = "[\u00bc\u00bd\u00be\u2153-\u215e]"
DOLSIGN = r"[A-Z]*\$|#"
DOLSIGN2 = "[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]"
LETTER = (f"(?:{_ALPHA}|{SPLET}|[\u00ad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff"
          "\u0300-\u036f\u0370-\u037d\u0384\u0385\u03cf\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf"
          "\u04f6-\u04ff\u0510-\u0525\u055a-\u055f\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5\u05c7"
          "\u0615-\u061a\u063b-\u063f\u064b-\u065e\u0670\u06d6-\u06ef\u06fa-\u06ff\u070f\u0711"
          "\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa\u0900-\u0903\u093c\u093e-\u094e"
          "\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8\u09cb-\u09cd\u09d7\u09e2"
          "\u09e3\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83\u0abc-\u0acf\u0b82\u0bbe-\u0bc2"
          "\u0bc6-\u0bc8\u0bca-\u0bcd\u0c01-\u0c03\u0c3e-\u0c56\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a"
          "\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd])")
LD = f"(?:{LETTER}|{DIGIT})"
WORD = f"{LETTER}{LD}*(?:[.!?]{LETTER}{LD}*)*"
FILENAME_EXT = _ci("|".join(sorted(
    "bat bmp c class cgi cpp dll doc docx exe gif gz h htm html jar java jpeg jpg mov mp3 pdf php "
    "pl png ppt ps py sql tar txt wav x xml zip".split(), key=len, reverse=True)))
FILENAME = f"{LD}+(?:\\.{LD}+)*\\.{FILENAME_EXT}"
APOS = "(?:['\u0092\u2019]|&" + _ci("apos") + ";)"
APOSETCETERA = f"(?:{APOS}|[`\u0091\u2018\u201b])"
AD = f"(?:{_ALPHA}|{DIGIT})"
HYPHEN = "[-_\u058a\u2010\u2011]"
THING = (f"(?:[dDoOlL]{APOSETCETERA}{AD})?{AD}+"
         f"(?:{HYPHEN}(?:[dDoOlL]{APOSETCETERA}{AD})?{AD}+)*")
THINGA = "[A-Z]+(?:(?:[+&]|" + SPAMP + ")[A-Z]+)+"
THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
ACRO_SPECIAL = (_ci("canada|korean|japan|sino|non|eu") + "-" + _ci(r"u\.s") + "|"
                + _ci(r"u\.s\.-") + "(?:" + _ci(r"u\.s\.s\.r|u\.k") + ")")
ACRO = rf"(?:[A-Za-z](?:\.[A-Za-z])*|{ACRO_SPECIAL})"
ACRO2 = rf"(?:[A-Za-z](?:\.[A-Za-z])+|{ACRO_SPECIAL})"
HTHING = f"[A-Za-z0-9][A-Za-z0-9.,\u00ad]*(?:-(?:[A-Za-z0-9\u00ad]+|{ACRO2}\\.))+"
REDAUX = f"{APOS}(?:[msdMSD]|" + _ci("re|ve|ll") + ")"
SWORD = "[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*"
SREDAUX = _ci("n") + APOSETCETERA + _ci("t")
APOWORD = [  # alternatives listed separately so that the longest one wins, as in JFlex
    f"{APOS}" + _ci("n") + f"{APOS}?", f"[lLdDjJ]{APOS}",
    _ci("dunkin|somethin|ol") + APOS, APOS + _ci("em"),
    f"[A-HJ-XZn]{APOSETCETERA}{_ALPHA}{{2}}{_ALPHA}*", f"{APOS}[2-9]0" + _ci("s"),
    APOS + _ci("till?"), f"{_ALPHA}{_ALPHA}*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z]{_ALPHA}*",
    APOS + _ci("cause"), _ci(r"cont'd\.?"),
    _ci("'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l"), _ci("o") + APOSETCETERA + _ci("o"),
]
APOWORD2 = _ci("y") + APOS
FULLURL = _ci("https?") + r"://[^ \t\n\f\r\"<>|(){}]+[^ \t\n\f\r\"<>|.!?(){},-]"
LIKELYURL = (r"(?:(?:" + _ci("www") + r"\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})"
             r"|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+" + _ci("com|net|org|edu") + "))"
             r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?")
EMAIL = ("(?:&" + _ci("lt") + ";|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00a0{}]*@"
         "(?:[^ \t\n\f\r\"<>|(){}.\u00a0]+\\.)*[^ \t\n\f\r\"<>|(){}.\u00a0]+(?:&" + _ci("gt") + ";|>)?")
TWITTER = f"@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTER}+"


def _words(spec: str) -> str:
    """Alternation of lexer words; a leading "[X]" keeps that letter's case, the rest is caseless."""
    out = []
    for w in spec.split():
        if w.startswith("["):
            out.append(w[:3] + _ci(w[3:]) if len(w) > 3 else w)
        else:
            out.append(_ci(w))
    return "(?:" + "|".join(out) + ")"


ABBREV1 = _words(
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri "
    r"ala ariz [A]z [A]rk calif colo conn ct dak [D]el fla ga [I]ll ind kans? ky [L]a [M]ass md mich "
    "minn [M]iss mo mont neb nev okla [O]re [P]a penn tenn [T]ex va vt [W]ash wisc? wyo "
    r"inc cos? corp p(?:p)?t[ye]s? ltd plc rt bancorp bhd assn univ intl sys tel est ext sq "
    r"jr sr bros (?:ed|ph)\.d blvd rd esq etc al seq bldg") + r"\."
ABBREV4 = _words(
    "mr mrs ms [M]iss drs? profs? sens? reps? attys? lt col gen messrs govs? adm rev maj sgt cpl pvt "
    "capt ste? ave pres lieut hon brig co?mdr pfc spc supts? det mt ft adj adv asst assoc ens insp "
    r"mlle mme msgr sfc vs alex wm jos cie a\.k\.a cf treas ph invt elec natl m[ft]g dept")
ABBREV4 = f"(?:{ABBREV4}|{ACRO})"
ABBREV2 = ABBREV4 + r"\."
ACRONYM = ACRO + r"\."
ABBREV3 = _words("ca figs? prop nos? art bldg pp op") + r"\."
AFTER_ACRONYM = _words(
    r"[A]bout [A]ccording [A]dditionally [A]fter [A]n [A] [A]s [A]t [B]ut [E]arlier [H]e [H]er "
    r"[H]ere [H]owever [I]f [I]n [I]t [L]ast [M]any [M]ore [M]r\. [M]s\. [N]ow [O]nce [O]ne "
    r"[O]ther [O]ur [S]he [S]ince [S]o [S]ome [S]uch [T]hat [T]he [T]heir [T]hen [T]here [T]hese "
    r"[T]hey [T]his [W]e [W]hen [W]hile [W]hat [Y]et [Y]ou")
PHONE = (r"(?:\([0-9]{2,3}\)[ \u00a0]?|(?:\+\+?)?(?:[0-9]{2,4}[- \u00a0])?[0-9]{2,4}[- \u00a0])"
         r"[0-9]{3,4}[- \u00a0]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}")
LDOTS = "\\.{3,5}|(?:\\.[ \u00a0]){2,4}\\.|[\u0085\u2026]"
INSENTP = "[,;:\u3001]"
QUOTE_CHARS = "[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091\u0092\u0093\u0094\u201e\u201f\u2039\u203a\u00ab\u00bb]"
DBLQUOT = '"|&' + _ci("quot") + ";"
TBSPEC = "|".join([
    "-" + _ci("rrb|lrb|rcb|lcb|rsb|lsb") + "-", _ci(r"c\.d\.s|pro-|anti-"),
    _ci("s") + "(?:&|" + SPAMP + ")" + _ci("p-500|ls"), _ci("cap") + APOS + _ci("n"),
    _ci("c") + APOS + _ci("est")])
TBSPEC2 = f"{APOS}[0-9][0-9]"
SMILEY = r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]"
ASIANSMILEY = (r"[\^x=~<>]\.\[\^x=~<>\]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)"
               r"|\([\^x=~<>']-[\^x=~<>'`]\)")
MISCSYMBOL = ("[+%&~^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00b3\u00b4-\u00ba\u00d7"
              "\u00f7\u0387\u05be\u05c0\u05c3\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614"
              "\u061b\u061e\u066a\u066d\u0703-\u070d\u07f6\u07f7\u07f8\u0964\u0965\u0e4f\u1fbd\u2016"
              "\u2017\u2020-\u2023\u2030-\u2038\u203b\u203e-\u2042\u2044\u207a-\u207f\u208a-\u208e"
              "\u2100-\u214f\u2190-\u21ff\u2200-\u2bff\u3012\u30fb\uff01-\uff0f\uff1a-\uff20"
              "\uff3b-\uff40\uff5b-\uff65]")

# --- Token rewrites done by the lexer's actions (default options). ---
_LEFT_SINGLE, _RIGHT_SINGLE = "[\u0091\u2018\u201b\u2039]", "[\u0092\u2019\u203a]"
_LEFT_DOUBLE, _RIGHT_DOUBLE = "[\u0093\u201c\u00ab]", "[\u0094\u201d\u00bb]"


def _quotes(tok: str, probably_left: bool) -> str:  # latexQuotes()
    if probably_left:
        tok = re.sub("&apos;|'", "`", tok)
        tok = re.sub('"|&quot;', "``", tok)
    else:
        tok = re.sub("&apos;|'", "'", tok)
        tok = re.sub('"|&quot;', "''", tok)
    tok = re.sub(_LEFT_SINGLE, "`", tok)
    tok = re.sub(_RIGHT_SINGLE, "'", tok)
    tok = re.sub(_LEFT_DOUBLE, "``", tok)
    return re.sub(_RIGHT_DOUBLE, "''", tok)


def _soft(tok: str) -> str:  # removeSoftHyphens()
    out = tok.replace("\u00ad", "")
    return out if out or not tok else "-"


def _amp(tok: str) -> str:
    return re.sub("(?i:&amp;)", "&", tok)


_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_CURRENCY = [("\u00a2", "cents"), ("\u00a3", "#")] + [(c, "$") for c in "\u0080\u00a4\u20a0\u20ac"]
_BRACKETS = {"{": "-LCB-", "}": "-RCB-", "[": "-LSB-", "]": "-RSB-", "(": "-LRB-", ")": "-RRB-"}


def _parens(tok: str) -> str:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-")


def _currency(tok: str) -> str:
    for a, b in _CURRENCY:
        tok = tok.replace(a, b)
    return tok


_SKIP, _NL = object(), object()


def _keep(tok: str) -> tuple[object, int]:
    return tok, 0


def _pushback(n: int) -> Callable[[str], tuple[object, int]]:
    return lambda tok: (tok[:-n], n)


def _acronym(tok: str) -> tuple[object, int]:
    if len(tok) == 2:  # "I." and the like: the letter now, the period next time
        return tok[:1], 1
    return tok, 1  # the word WITH its period, and the period again next time


# (regex, trailing context or None, action) in the order of PTBLexer.flex's rules.
_RULES: list[tuple[str, str | None, Callable[[str], tuple[object, int]]]] = [
    (_ci(r"c\+\+"), None, _keep), (_ci("c|f") + "#", None, _keep),
    (_ci("cannot"), None, _pushback(3)), ("'" + _ci("twas"), None, _pushback(3)),
    ("'" + _ci("tis"), None, _pushback(2)),
    (_ci("gonna|gotta|lemme|gimme|wanna"), None, _pushback(2)),
    (SGML, None, lambda t: (t.replace(" ", "\u00a0"), 0)),
    (SPMDASH, None, lambda t: ("--", 0)), (SPAMP, None, lambda t: (_amp(t), 0)),
    (SPPUNC, None, _keep),
    (WORD, REDAUX, lambda t: (_soft(t), 0)), (SWORD, SREDAUX, lambda t: (_soft(t), 0)),
    (WORD, None, lambda t: (_soft(t), 0)),
    *[(alt, None, _keep) for alt in APOWORD], (APOWORD2, _ALPHA, _keep),
    (FULLURL, None, _keep), (LIKELYURL, None, _keep), (EMAIL, None, _keep), (TWITTER, None, _keep),
    (REDAUX, "[^A-Za-z]", lambda t: (_quotes(t, False), 0)),
    (SREDAUX, "[^A-Za-z]", lambda t: (_quotes(t, False), 0)),
    (DATE, None, _keep), (NUMBER, None, lambda t: (_soft(t), 0)), (SUBSUPNUM, None, _keep),
    (FRAC, None, lambda t: (t.replace(" ", "\u00a0"), 0)),
    (FRAC2, None, lambda t: (_FRACTIONS.get(t, t), 0)), (TBSPEC, None, lambda t: (_amp(t), 0)),
    (THING3, None, _keep), (DOLSIGN, None, _keep), (DOLSIGN2, None, lambda t: (_currency(t), 0)),
    (ACRONYM, f"{SPACENL}+(?:{AFTER_ACRONYM}|{SGML}){SPACENL}", _acronym),
    (ABBREV3, f"{SPACENL}?{DIGIT}", _keep),
    (_ci("pt") + r"[eyEY]\.|" + _ci(r"co\."), SPACE + _ci("ltd|lim"), _keep),
    (ABBREV1, SENTEND, lambda t: (t, 1)), (ABBREV1, "(?s:..)", _keep), (ABBREV1, None, lambda t: (t, 1)),
    (ABBREV2, None, _keep), (ABBREV4, SPACE, _keep), (ACRO, SPACENL, _keep),
    (TBSPEC2, SPACENL, _keep), (FILENAME, f"(?:{SPACENL}|[.?!,])", _keep),
    (WORD + r"\.", INSENTP, lambda t: (_soft(t), 0)),
    (PHONE, None, lambda t: (_parens(t.replace(" ", "\u00a0")), 0)),
    (DBLQUOT, "[A-Za-z0-9$]", lambda t: (_quotes(t, True), 0)),
    (DBLQUOT, None, lambda t: (_quotes(t, False), 0)),
    ("\x7f", None, lambda t: (_SKIP, 0)),
    ("<|&" + _ci("lt") + ";", None, lambda t: ("<", 0)), (">|&" + _ci("gt") + ";", None, lambda t: (">", 0)),
    (SMILEY, "[^A-Za-z0-9]", lambda t: (_parens(t), 0)), (ASIANSMILEY, None, lambda t: (_parens(t), 0)),
    (r"[{}\[\]()]", None, lambda t: (_BRACKETS[t], 0)),
    (r"-+", None, lambda t: ("--" if 3 <= len(t) <= 4 else t, 0)),
    (LDOTS, None, lambda t: ("...", 0)),
    ("@+|#+|_+", None, _keep), (r"\*+|(?:\\\*){1,3}", None, _keep), (INSENTP, None, _keep),
    ("[?!]+", None, _keep), ("[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]", None, _keep),
    ("=", None, _keep), ("/", None, _keep),
    (HTHING + r"\.", INSENTP, lambda t: (_soft(t), 0)), (HTHING, None, lambda t: (_soft(t), 0)),
    (THING + r"\.", INSENTP, _keep), (THING, None, _keep),
    (THINGA + r"\.", INSENTP, lambda t: (_amp(t), 0)), (THINGA, None, lambda t: (_amp(t), 0)),
    ("'", "[A-Za-z][^ \t\n\r\u00a0]", lambda t: (_quotes(t, True), 0)),
    (REDAUX, None, lambda t: (_quotes(t, False), 0)), (SREDAUX, None, lambda t: (_quotes(t, False), 0)),
    (APOS, None, lambda t: (_quotes(t, False), 0)), ("''", None, lambda t: (_quotes(t, False), 0)),
    (QUOTE_CHARS + "{1,2}", None, lambda t: (_quotes(t, False), 0)),
    ("<<|>>", None, _keep), (MISCSYMBOL, None, _keep),
    (f"\\x00|{SPACE}+|[\u200b\u200e\u200f\ufeff]", None, lambda t: (_SKIP, 0)),
    (NEWLINE, None, lambda t: (_NL, 0)), ("&" + _ci("nbsp") + ";", None, lambda t: (_SKIP, 0)),
    (".", None, lambda t: (_SKIP, 0)),  # untokenizable: deleted (the jar logs a warning)
]


@lru_cache(maxsize=1)
def _compiled() -> list[tuple[re.Pattern[str], Callable[[str], tuple[object, int]]]]:
    out = []
    for main, trail, action in _RULES:
        pattern = f"(?:{main})" + (f"(?=(?P<t>{trail}))" if trail else "")
        out.append((re.compile(pattern), action))
    return out


_FAST = re.compile(r"[A-Za-z]+(?=[ \n]|\Z)")  # a plain ASCII word: nothing longer can match here
_FAST_EXCLUDED = {"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"}


def _lex(text: str) -> list[str | None]:
    """Tokens of ``text`` as the lexer returns them (``None`` for a newline), not lowercased."""
    rules = _compiled()
    out: list[str | None] = []
    pos, end = 0, len(text)
    while pos < end:
        fast = _FAST.match(text, pos)
        if fast and fast.group().lower() not in _FAST_EXCLUDED:
            out.append(fast.group())
            pos = fast.end()
            continue
        best, best_len, best_action = None, 0, None
        for rx, action in rules:
            m = rx.match(text, pos)
            if m is None:
                continue
            total = m.end() - pos + (len(m.group("t")) if "t" in rx.groupindex else 0)
            if total > best_len:
                best, best_len, best_action = m, total, action
        assert best is not None and best_action is not None  # the "." rule matches any char but \n
        tok, pushed = best_action(best.group())
        pos = best.end() - pushed
        if tok is _NL:
            out.append(None)
        elif tok is not _SKIP:
            out.append(tok)  # type: ignore[arg-type]
    return out


def ptb_tokenize_lines(captions: Sequence[str]) -> list[str]:
    """Tokenise captions as pycocoevalcap does in one Java run: one line each, lowercased, punctuation dropped.

    The captions are joined by newlines into one document (as pycocoevalcap writes its temporary
    file), so the few lexer rules that look past a line end see the same context.
    """
    text = "\n".join(LINE_BREAKS.sub(" ", c.replace("\n", " ")) for c in captions)
    lines: list[list[str]] = [[]]
    for tok in _lex(text):
        if tok is None:
            lines.append([])
        else:
            lines[-1].append(tok.lower())
    lines += [[] for _ in range(len(captions) - len(lines))]
    return [" ".join(w for w in line if w not in PUNCTUATIONS) for line in lines[:len(captions)]]


def ptb_raw_tokens(text: str) -> list[str]:
    """The lowercased lexer tokens of one caption, before pycocoevalcap drops punctuation."""
    return [t.lower() for t in _lex(LINE_BREAKS.sub(" ", text.replace("\n", " "))) if t is not None]
