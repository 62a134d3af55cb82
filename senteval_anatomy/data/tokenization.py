"""Text post-processing that SentEval's ``get_transfer_data.bash`` does with shell tools, done in Python.

* Moses tokenization (SICK, STS12-16, STS-B) uses the PyPI package ``sacremoses`` with the settings of SentEval's
  call, ``tokenizer.perl -l en -no-escape`` (no aggressive hyphen splitting, no HTML escaping); STS and STS-B are then
  lower-cased like Moses' ``lowercase.perl``.
* MR, CR, SUBJ and MPQA go through ``cat -v`` and then the Penn Treebank ``tokenizer.sed``. Both are reimplemented
  here from their documented behaviour (GNU ``cat -v`` notation; the PTB tokenization rules published with the
  Treebank: directional double quotes, punctuation split, final period split, clitics and a few fused words split).
  ``docs/data.md`` lists every rule and the one deliberate difference: we also strip trailing spaces, which SentEval's
  loaders ignore anyway (they use ``str.split``).
* TREC: every backtick and single quote is deleted.
* ``cut_fields`` and ``split_lines`` reproduce the ``cut -f`` and line semantics the script relies on, so that edge
  cases (lines without tabs, a ``\\r`` before the newline, a missing final newline) come out the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

# ------------------------------------------------------------------ shell helpers


def split_lines(text: str) -> tuple[list[str], bool]:
    """Split on ``\\n`` only (like the shell tools). Returns the lines and whether the text ended with a newline."""
    if not text:
        return [], False
    lines = text.split("\n")
    if lines[-1] == "":
        return lines[:-1], True
    return lines, False


def cut_fields(line: str, fields: Sequence[int]) -> str:
    """``cut -f`` on one line (1-based fields, tab separated).

    Like ``cut`` without ``-s``, a line that holds no tab is returned whole whatever the field list; fields past the
    end are silently skipped.
    """
    if "\t" not in line:
        return line
    parts = line.split("\t")
    return "\t".join(parts[i - 1] for i in sorted(set(fields)) if 0 < i <= len(parts))


def strip_trec_quotes(data: bytes) -> bytes:
    """TREC post-processing: delete every backtick and every single quote, byte-wise."""
    return data.replace(b"`", b"").replace(b"'", b"")


# ------------------------------------------------------------------ cat -v


def _cat_v_byte(b: int) -> bytes:
    out = b""
    if b >= 128:
        out = b"M-"
        b -= 128
        if b < 32:
            return out + b"^" + bytes([b + 64])
    elif b < 32 and b not in (9, 10):
        return b"^" + bytes([b + 64])
    if b == 127:
        return out + b"^?"
    return out + bytes([b])


_CAT_V = [_cat_v_byte(b) for b in range(256)]
_CAT_V_RE = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f-\xff]")


def cat_v(data: bytes) -> bytes:
    """What ``cat -v`` prints: control bytes as ``^X``, DEL as ``^?``, bytes >= 128 as ``M-`` plus the notation of
    the low 7 bits. Tab and newline pass through. The result is pure ASCII."""
    return _CAT_V_RE.sub(lambda m: _CAT_V[m[0][0]], data)


# ------------------------------------------------------------------ PTB tokenizer rules

_PTB_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        # Opening double quotes: at the start, or after a space or an opening bracket.
        (r'^"', "`` "),
        (r'([ (\[{<])"', r"\1 `` "),
        # Ellipsis and the always-separate punctuation.
        (r"\.\.\.", " ... "),
        (r"[,;:@#$%&]", r" \g<0> "),
        # Only the sentence-final period is split (with any closing brackets or quotes after it).
        (r"([^.])([.])([\])}>\"']*)[ \t]*$", r"\1 \2\3 "),
        (r"[?!]", r" \g<0> "),
        (r"[\]\[(){}<>]", r" \g<0> "),
        (r"--", " -- "),
        # Pad both ends so that the word rules below can anchor on spaces.
        (r"$", " "),
        (r"^", " "),
        # Remaining double quotes close a quotation.
        (r'"', " '' "),
        # Possessive or closing single quote; clitics.
        (r"([^'])' ", r"\1 ' "),
        (r"'([sSmMdD]) ", r" '\1 "),
        (r"'ll ", " 'll "),
        (r"'re ", " 're "),
        (r"'ve ", " 've "),
        (r"n't ", " n't "),
        (r"'LL ", " 'LL "),
        (r"'RE ", " 'RE "),
        (r"'VE ", " 'VE "),
        (r"N'T ", " N'T "),
        # Fused words split in two.
        (r" ([Cc])annot ", r" \1an not "),
        (r" ([Dd])'ye ", r" \1' ye "),
        (r" ([Gg])imme ", r" \1im me "),
        (r" ([Gg])onna ", r" \1on na "),
        (r" ([Gg])otta ", r" \1ot ta "),
        (r" ([Ll])emme ", r" \1em me "),
        (r" ([Mm])ore'n ", r" \1ore 'n "),
        (r" '([Tt])is ", r" '\1 is "),
        (r" '([Tt])was ", r" '\1 was "),
        (r" ([Ww])anna ", r" \1an na "),
        # Whitespace clean-up.
        (r" +", " "),
        (r"^ ", ""),
        (r" $", ""),
    ]
]


def ptb_tokenize(line: str) -> str:
    """Penn Treebank tokenization of one line, rules applied in order like ``sed -f tokenizer.sed``.

    Each rule is a global substitution scanned left to right, which is what both ``sed``'s ``g`` flag and
    ``re.sub`` do, so overlapping contexts behave the same way.
    """
    for pattern, repl in _PTB_RULES:
        line = pattern.sub(repl, line, count=1 if pattern.pattern in ("$", "^") else 0)
    return line


# ------------------------------------------------------------------ Moses


@lru_cache(maxsize=1)
def _moses():  # noqa: ANN202 - sacremoses has no type hints
    from sacremoses import MosesTokenizer

    return MosesTokenizer(lang="en")


def moses_tokenize(text: str, lowercase: bool = False) -> str:
    """Moses tokenization as ``tokenizer.perl -l en -no-escape`` (optionally followed by ``lowercase.perl``)."""
    out = _moses().tokenize(text, escape=False, return_str=True, aggressive_dash_splits=False)
    return out.lower() if lowercase else out
