"""How wide a display equation renders, estimated from its LaTeX, for the page-width lint.

The book theme does not wrap display math: an equation wider than the text column runs under its
number and is clipped (issue 15). Counting LaTeX characters is a poor proxy (``\\boldsymbol{\\gamma}``
is one glyph, ``\\frac{a}{b}`` is as wide as its wider part), so :func:`rendered_width` walks the
LaTeX the way a typesetter lays it out, in units of one ordinary glyph: fractions take their wider
part, scripts count at script size, limits of big operators sit below them, ``\\\\`` starts a new
line, spacing commands count their width, font and sizing commands count nothing themselves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SCRIPT = 0.7  # script-size glyphs relative to text glyphs
RELATION_SPACE = 0.55  # thick spaces either side of =, <, \le, ...
BINARY_SPACE = 0.45  # medium spaces either side of +, -, \cdot, ...
SPACES = {",": 0.17, ":": 0.22, ";": 0.28, "!": -0.17, " ": 0.33, "quad": 1.0, "qquad": 2.0}
SILENT = {
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "limits",
    "nolimits",
    "label",
    "nonumber",
    "notag",
    "begin",
    "end",
    "tag",
    "middle",
    "mathstrut",
    "strut",
    "phantom",
}
FONTS = {
    "mathbf",
    "boldsymbol",
    "bm",
    "mathrm",
    "mathcal",
    "mathbb",
    "mathsf",
    "mathit",
    "mathfrak",
    "mathscr",
    "operatorname",
    "operatorname*",
    "hat",
    "bar",
    "tilde",
    "widehat",
    "widetilde",
    "vec",
    "dot",
    "ddot",
    "overline",
    "underline",
    "check",
    "breve",
    "mathring",
}
TEXTS = {
    "text",
    "textrm",
    "textit",
    "textbf",
    "mbox",
    "mathrm",
    "operatorname",
    "operatorname*",
}  # counted by letters
BIG_OPERATORS = {
    "sum",
    "prod",
    "int",
    "oint",
    "bigcup",
    "bigcap",
    "min",
    "max",
    "argmin",
    "argmax",
    "lim",
    "sup",
    "inf",
    "operatorname*",
}
RELATIONS = {
    "=",
    "<",
    ">",
    "le",
    "leq",
    "ge",
    "geq",
    "approx",
    "sim",
    "propto",
    "equiv",
    "in",
    "notin",
    "subset",
    "subseteq",
    "leftarrow",
    "rightarrow",
    "Leftarrow",
    "Rightarrow",
    "to",
    "mapsto",
    "ne",
    "neq",
    "coloneqq",
    "gets",
    "iff",
    "implies",
    "ll",
    "gg",
    "mid",
}
BINARIES = {
    "+",
    "-",
    "cdot",
    "times",
    "pm",
    "mp",
    "wedge",
    "vee",
    "cup",
    "cap",
    "circ",
    "odot",
    "otimes",
    "oplus",
    "setminus",
    "ast",
}
TOKEN = re.compile(r"\\([A-Za-z]+\*?|.)|([{}^_&])|(\s+)|(.)", re.DOTALL)


def expand_macros(latex: str, macros: Mapping[str, str]) -> str:
    """``latex`` with the book's math macros (myst.yml ``math:``) replaced by their definitions."""
    for _ in range(5):  # macros may use macros
        expanded = re.sub(
            r"\\([A-Za-z]+)(?![A-Za-z])", lambda m: macros.get("\\" + m.group(1), m.group(0)), latex
        )
        if expanded == latex:
            return latex
        latex = expanded
    return latex


def _tokens(latex: str) -> list[str]:
    tokens = []
    for command, special, _space, char in TOKEN.findall(latex):
        if command:
            tokens.append("\\" + command)
        elif special:
            tokens.append(special)
        elif char:
            tokens.append(char)
    return tokens


class _Layout:
    """A one-pass reader of the token list; widths in ordinary-glyph units."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.at = tokens, 0

    def _next(self) -> str | None:
        if self.at >= len(self.tokens):
            return None
        self.at += 1
        return self.tokens[self.at - 1]

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _argument(self) -> list[float]:
        """The next braced group or single token, as its line widths."""
        if self._peek() == "{":
            self._next()
            return self.lines(until="}")
        token = self._next()
        if token is None:
            return [0.0]
        return [self._atom(token)]

    def _raw_group(self) -> str:
        """The next braced group's raw text (for \\text{...} and \\begin{...})."""
        if self._peek() != "{":
            token = self._next()
            return token or ""
        self._next()
        depth, parts = 1, []
        while (token := self._next()) is not None:
            depth += token == "{"
            depth -= token == "}"
            if depth == 0:
                break
            parts.append(token)
        return "".join(parts)

    def _atom(self, token: str) -> float:
        """The width of one token that is not a group opener or script marker."""
        name = token[1:] if token.startswith("\\") else None
        if name is None:
            if token in "=<>":
                return 1 + 2 * RELATION_SPACE
            if token in "+-":
                return 1 + 2 * BINARY_SPACE
            return 0.5 if token in ",.;:()[]|'" else 1.0
        if name in SPACES:
            return SPACES[name]
        if name == "\\":
            return 0.0
        if name in ("begin", "end", "label", "tag"):
            self._raw_group()
            return 0.0
        if name in SILENT:
            return 0.0
        if name in TEXTS:
            return 0.9 * len(self._raw_group().replace("\\,", ""))
        if name in FONTS:
            return max(self._argument())
        if name in ("frac", "dfrac", "tfrac", "binom"):
            top, bottom = max(self._argument()), max(self._argument())
            return max(top, bottom) + 0.3
        if name == "sqrt":
            return max(self._argument()) + 1.0
        if name in ("underbrace", "overbrace"):
            return max(self._argument())
        if name in RELATIONS:
            return 1 + 2 * RELATION_SPACE
        if name in BINARIES:
            return 1 + 2 * BINARY_SPACE
        if name in ("sum", "prod", "int", "oint", "bigcup", "bigcap"):
            return 1.5
        if name in (
            "min",
            "max",
            "lim",
            "sup",
            "inf",
            "log",
            "exp",
            "det",
            "arg",
            "sin",
            "cos",
            "tr",
        ):
            return 0.9 * len(name)
        return 1.0

    def lines(self, until: str | None = None) -> list[float]:
        """Widths of the lines up to ``until`` (``}``) or the end; ``\\\\`` starts a new line."""
        widths, width = [], 0.0
        last_base = 0.0
        last_token = ""
        while (token := self._next()) is not None:
            if token == until:
                break
            if token == "{":
                last_base = max(self.lines(until="}"))
                width += last_base
                last_token = "{"
            elif token in ("^", "_"):
                script = SCRIPT * max(self._argument())
                other = 0.0
                if self._peek() in ("^", "_"):  # both scripts: they stack
                    self._next()
                    other = SCRIPT * max(self._argument())
                script = max(script, other)
                name = last_token[1:] if last_token.startswith("\\") else ""
                if (
                    name in BIG_OPERATORS
                    or last_token in ("\\argmin", "\\argmax")
                    or last_token == "}underbrace"
                ):
                    width += max(0.0, script - last_base)  # limits sit below or above the operator
                else:
                    width += script
            elif token == "\\\\":
                widths.append(width)
                width = 0.0
            elif token == "&":
                continue
            else:
                before = self.at
                last_base = self._atom(token)
                width += last_base
                last_token = token
                if token in ("\\underbrace", "\\overbrace"):
                    last_token = "}underbrace"
                elif token in ("\\operatorname*",) and "arg" in "".join(
                    self.tokens[before : self.at]
                ):
                    last_token = "\\argmin"
        widths.append(width)
        return widths


def rendered_width(latex: str, macros: Mapping[str, str] | None = None) -> float:
    """The widest line of display math ``latex``, in ordinary glyphs (a letter is 1).

    Args:
        latex: the body of one display equation (``\\label`` and ``aligned`` allowed).
        macros: the book's math macros, expanded first.
    """
    text = expand_macros(latex, macros or {})
    return max(_Layout(_tokens(text)).lines())


def display_equations(markdown: str) -> list[tuple[int, str]]:
    """Every display equation of a MyST page: ``(first line number, LaTeX body)``.

    Finds ``$$ ... $$`` blocks (with an optional ``(label)`` after them) and ```` ```{math} ````
    directives (their ``:label:`` option lines dropped). Code cells are skipped.
    """
    found: list[tuple[int, str]] = []
    lines = markdown.splitlines()
    fence: str | None = None
    number = 0
    while number < len(lines):
        stripped = lines[number].strip()
        match = re.match(r"^(`{3,}|~{3,})(\{math\})?", stripped)
        if fence is not None:
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                fence = None
            number += 1
            continue
        if match and match.group(2):
            start, body = number + 1, []
            number += 1
            while number < len(lines) and not lines[number].strip().startswith(match.group(1)):
                if not lines[number].strip().startswith(":"):
                    body.append(lines[number])
                number += 1
            found.append((start, "\n".join(body)))
        elif match:
            fence = match.group(1)
        elif stripped.startswith("$$"):
            start, rest = number + 1, stripped[2:]
            body = []
            while "$$" not in rest and number + 1 < len(lines):
                body.append(rest)
                number += 1
                rest = lines[number].strip()
            body.append(rest.split("$$")[0])
            found.append((start, "\n".join(body)))
        number += 1
    return found
