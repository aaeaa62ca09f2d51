"""``init_table``: per-nonlinearity init settings (gains, edge of chaos, χ1, ξc) as a table.

Render only; the numbers come from :func:`vanishcalc.solve.gain.gain`,
:func:`vanishcalc.solve.criticality.critical_sigma_w` and :class:`vanishcalc.maps.meanfield.MeanField`.
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy

from ..errors import VanishcalcError
from ..validate import real
from ..value import DISPLAY_DIGITS, ROUNDED_NOTE, shorten_decimals

COLUMNS = ("name", "expression", "gain_second_moment", "gain_std", "gain_backward",
           "closed_form", "critical_sigma_w", "critical_q_star", "q_star", "chi1", "xi_c",
           "bn_rate", "bn_gamma_105")

HEADERS = {
    "name": "φ", "expression": "expression", "gain_second_moment": "gain (2nd moment)",
    "gain_std": "gain (std)", "gain_backward": "gain (backward)", "closed_form": "closed form",
    "critical_sigma_w": "critical σw", "critical_q_star": "q* at critical σw",
    "q_star": "q* at 2nd-moment gain", "chi1": "χ1 there", "xi_c": "ξc there",
    "bn_rate": "BN rate (γ=1, β=0)", "bn_gamma_105": "γ for BN rate 1.05",
}

# Optional columns, present when init_table(..., transform="dks"|"tat", depth=L) asks for them:
# φ̂(x) = s·(φ(a·x + b) + c) of vanishcalc.transform (α: leaky ReLU's slope, TAT/DKS).
TRANSFORM_COLUMNS = ("transform_input_scale", "transform_input_shift", "transform_output_shift",
                     "transform_output_scale", "transform_negative_slope")
HEADERS.update({"transform_input_scale": "transform a", "transform_input_shift": "transform b",
                "transform_output_shift": "transform c", "transform_output_scale": "transform s",
                "transform_negative_slope": "transform α"})


@dataclass(frozen=True)
class InitTable:
    """Rows of init settings; ``rows`` is a list of dicts keyed by :data:`COLUMNS`.

    Numbers are floats (``inf`` for an infinite depth scale), missing entries are None, and
    ``notes`` explains each missing entry."""

    rows: list
    sigma_b: float
    notes: dict
    columns: tuple = COLUMNS      # COLUMNS, then TRANSFORM_COLUMNS when a transform was asked for
    #: Closed forms behind the numbers, keyed "<name>.<column>" (SymPy; the LaTeX format
    #: prints them); a cell without one is a certified numeric value.
    exact: dict = field(default_factory=dict)

    def _cell(self, v, digits=8):
        if v is None:
            return "—"
        if isinstance(v, float):
            return "∞" if v == math.inf else f"{v:.{digits}g}"
        return shorten_decimals(str(v))[0]    # selu's 40-digit constants would fill the page

    def _rounded_note(self):
        if any(shorten_decimals(str(r[c]))[1] for r in self.rows for c in ("expression", "closed_form")):
            return [f"- {ROUNDED_NOTE} (e.g. selu's λ, α); the csv and json formats carry them in full"]
        return []

    def _marked(self, row, col) -> str:
        """The cell, with † when a note explains a number in it (e.g. a q* = 0 limit)."""
        text = self._cell(row[col])
        noted = (f"{row['name']}.{col}" in self.notes or
                 (col == "critical_q_star" and f"{row['name']}.critical_sigma_w" in self.notes))
        return text + " †" if noted and row[col] is not None else text

    def to_markdown(self) -> str:
        head = "| " + " | ".join(HEADERS[c] for c in self.columns) + " |"
        sep = "|" + "|".join("---" for _ in self.columns) + "|"
        body = ["| " + " | ".join(self._marked(r, c).replace("|", "\\|") for c in self.columns) + " |"
                for r in self.rows]
        foot = ([f"\nσb = {self.sigma_b:g}. † and —: see the note for that cell."] +
                [f"- {k}: {v}" for k, v in self.notes.items()] + self._rounded_note())
        return "\n".join([head, sep, *body, *foot]) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for r in self.rows:
            w.writerow(["" if r[c] is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                        for c in self.columns])
        return buf.getvalue()

    def to_json(self) -> str:
        """The table as JSON: every number a JSON number, never a string.

        JSON has no infinity or NaN, so such a cell (ξc = ∞ at the edge of chaos) is written
        ``null`` and listed under ``"nonfinite"`` as ``{"<name>.<column>": "inf" | "-inf" |
        "nan"}``; every other null is a missing entry, explained under ``"notes"``.
        """
        nonfinite = {}

        def enc(name, column, v):
            if isinstance(v, float) and not math.isfinite(v):
                nonfinite[f"{name}.{column}"] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
                return None
            return v
        rows = [{c: enc(r["name"], c, r[c]) for c in self.columns} for r in self.rows]
        return json.dumps({"sigma_b": self.sigma_b, "columns": list(self.columns), "rows": rows,
                           "nonfinite": nonfinite, "notes": self.notes},
                          ensure_ascii=False, indent=1, allow_nan=False)

    def to_latex(self) -> str:
        """The table as a LaTeX ``tabular`` in booktabs style (``\\usepackage{booktabs}``).

        A number with a closed form is written as the form and its decimal,
        ``$\\sqrt[4]{5} \\approx 1.4953488$``; other numbers as decimals; φ names in
        ``\\texttt`` with LaTeX's special characters escaped; the notes follow the table.
        """
        head = " & ".join(_latex_text(HEADERS[c]) for c in self.columns) + r" \\"
        body = [" & ".join(self._latex_cell(r, c) for c in self.columns) + r" \\" for r in self.rows]
        notes = ([f"$\\sigma_b = {self.sigma_b:g}$. $^\\dagger$ and ---: see the note for that "
                  f"cell."] + [f"{_latex_text(k)}: {_latex_text(v)}" for k, v in self.notes.items()]
                 + [_latex_text(n.lstrip("- ")) for n in self._rounded_note()])
        return "\n".join([
            "% vanishcalc init table; needs \\usepackage{booktabs}",
            r"\begin{tabular}{" + "ll" + "r" * (len(self.columns) - 2) + "}",
            r"\toprule", head, r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
            r"\par\smallskip{\footnotesize", *(n + r"\par" for n in notes), "}"]) + "\n"

    def _latex_cell(self, row, col) -> str:
        v = row[col]
        if v is None:
            return "---"
        exact = self.exact.get(f"{row['name']}.{col}")
        if col == "name":
            text = r"\texttt{" + _latex_escape(str(v)) + "}"
        elif exact is not None and col in ("expression", "closed_form"):
            text = f"${_latex_math(exact)}$"
        elif isinstance(v, float):
            num = r"\infty" if v == math.inf else (r"-\infty" if v == -math.inf else f"{v:.8g}")
            if exact is not None and exact.is_number and not exact.is_Float and \
                    not exact.is_Integer:
                text = f"${_latex_math(exact)} \\approx {num}$"
            else:
                text = f"${num}$"
        else:
            text = r"\texttt{" + _latex_escape(shorten_decimals(str(v))[0]) + "}"
        noted = self._marked(row, col).endswith(" †")
        return _merge_math(text + (r"$^\dagger$" if noted else ""))

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(HEADERS[c])}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._marked(r, c))}</td>" for c in self.columns)
                       + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __repr__(self):
        return self.to_markdown()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"φ": r"$\phi$", "σ": r"$\sigma$", "χ": r"$\chi$", "ξ": r"$\xi$",
                  "γ": r"$\gamma$", "β": r"$\beta$", "λ": r"$\lambda$", "α": r"$\alpha$",
                  "†": r"$^\dagger$", "—": "---", "–": "--", "→": r"$\to$", "√": r"$\surd$",
                  "∞": r"$\infty$", "≈": r"$\approx$", "≥": r"$\geq$", "≤": r"$\leq$",
                  "±": r"$\pm$", "·": r"$\cdot$", "²": r"$^2$", "′": "'", "∂": r"$\partial$",
                  "−": "-", "×": r"$\times$", "π": r"$\pi$", "μ": r"$\mu$", "η": r"$\eta$"}


def _latex_escape(text: str) -> str:
    """Plain text → LaTeX text: special characters escaped (exp(-x**2) stays readable)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


#: Symbols of shared/README.md's notation, matched before single characters.
_LATEX_SYMBOLS = re.compile(r"σw|σb|χ1|χc|ξc|ξq|q\*|c\*")
_LATEX_SYMBOL = {"σw": r"$\sigma_w$", "σb": r"$\sigma_b$", "χ1": r"$\chi_1$", "χc": r"$\chi_c$",
                 "ξc": r"$\xi_c$", "ξq": r"$\xi_q$", "q*": r"$q^*$", "c*": r"$c^*$"}


def _merge_math(text: str) -> str:
    """Join adjacent math spans ($a$$b$ → $ab$): "$$" would open display math in TeX."""
    return re.sub(r"(?<!\\)\$\$", "", text)


def _latex_text(text: str) -> str:
    """A header or note → LaTeX: escaped, the notation's symbols (σw, χ1, q*) and other Greek
    letters in math mode."""
    out, pos = [], 0
    text = str(text)
    for m in list(_LATEX_SYMBOLS.finditer(text)) + [None]:
        end = len(text) if m is None else m.start()
        out.extend(_LATEX_UNICODE.get(ch, _LATEX_SPECIAL.get(ch, ch)) for ch in text[pos:end])
        if m is not None:
            out.append(_LATEX_SYMBOL[m.group()])
            pos = m.end()
    return _merge_math("".join(out))


def _latex_math(expr) -> str:
    """SymPy's LaTeX of a closed form, decimal constants beyond DISPLAY_DIGITS + 2 digits
    rounded (selu's 40-digit λ and α), as :meth:`vanishcalc.Value._repr_latex_` does."""
    floats = {f: sympy.Float(f, DISPLAY_DIGITS) for f in expr.atoms(sympy.Float)
              if len(str(f).lstrip("-").replace(".", "")) > DISPLAY_DIGITS + 2}
    return sympy.latex(expr.xreplace(floats))


class ExactForms(Mapping):
    """The closed forms behind init_table's numbers, keyed "<name>.<column>", each built
    when first read: a BN γ's form is a ``sympy.simplify`` (0.1–0.2 s), and only the LaTeX
    format (or a user) reads them.  A key is present exactly when its result has a closed form."""

    def __init__(self):
        self._sources = {}       # key -> a Value (or CriticalPoint part) still to be read
        self._built = {}

    def add(self, key, source):
        """``source``: a SymPy expression (kept as it is), or a result whose ``.exact`` is the
        form (checked by the caller to have one)."""
        if isinstance(source, sympy.Basic):
            self._built[key] = source
        else:
            self._sources[key] = source

    def __getitem__(self, key):
        if key not in self._built:
            # exact is a SymPy expression or a Python number (0, 1); never a string, so
            # never parsed
            self._built[key] = sympy.sympify(self._sources[key].exact)
        return self._built[key]

    def __iter__(self):
        return iter({**self._sources, **self._built})

    def __len__(self):
        return len({**self._sources, **self._built})

    def __repr__(self):
        return f"ExactForms({len(self)} closed forms)"


def _exact_sources(name, key, result) -> dict:
    """The results carrying closed forms in one computed result of init_table: a Value, or
    the σw and q* of a CriticalPoint, or γ of a BNAffine; keyed "<name>.<column>"."""
    if hasattr(result, "sigma_w") and hasattr(result, "q_star"):       # CriticalPoint
        parts = {"critical_sigma_w": result.sigma_w, "critical_q_star": result.q_star}
    elif hasattr(result, "gamma") and hasattr(result, "rate"):         # BNAffine
        parts = {key: result.gamma}
    else:
        parts = {key: result}
    if key == "gain_second_moment":
        parts["closed_form"] = result
    return {f"{name}.{col}": v for col, v in parts.items() if _has_exact(v)}


def _has_exact(v) -> bool:
    has = getattr(v, "has_exact", None)
    if has is not None:
        return has
    exact = getattr(v, "exact", None)
    return exact is not None and not isinstance(exact, str)


def _init_table_iv(specs, sigma_b):
    from .. import zoo
    if specs is None:
        specs = zoo.names()
    elif not isinstance(specs, (list, tuple)):
        specs = [specs]           # one φ: a name, an expression, an Activation
    return list(specs), real("init_table", "sigma_b", sigma_b, nonneg=True, why="(the bias std)")


def _transform_columns_iv(method, depth, targets):
    if method is None:
        given = [k for k, v in (("depth", depth), *targets.items()) if v is not None]
        if given:
            raise VanishcalcError(f"init_table: {given[0]} applies only with transform='dks' or "
                                  "'tat'")
        return None
    if method not in ("dks", "tat"):
        raise VanishcalcError(f"init_table: transform = {method!r} is not one of None, 'dks', "
                              "'tat'")
    if depth is None:
        raise VanishcalcError("init_table: transform columns need depth=L (the number of "
                              "nonlinear layers)")
    own = ("zeta",) if method == "dks" else ("eta", "tau")
    other = [k for k, v in targets.items() if v is not None and k not in own]
    if other:
        raise VanishcalcError(f"init_table: {other[0]} does not apply to transform={method!r} "
                              f"(it takes {' or '.join(own)})")
    return method


def _transform_cells(act, method, depth, targets):
    """The transform columns of one row (TAT: η for a leaky ReLU, τ for the others)."""
    from ..solve.transform import leaky_slope, transform
    kw = dict(targets)
    if method == "tat":
        kw.pop("tau" if leaky_slope(act) is not None else "eta", None)
    t = transform(act, method, depth=depth, **kw)
    return {"transform_input_scale": t.input_scale, "transform_input_shift": t.input_shift,
            "transform_output_shift": t.output_shift, "transform_output_scale": t.output_scale,
            "transform_negative_slope": t.negative_slope}



#: init_table(..., format=…) → the InitTable method that renders it.
FORMATS = {"md": "to_markdown", "csv": "to_csv", "json": "to_json", "latex": "to_latex",
           "html": "_repr_html_"}


def init_table(specs=None, sigma_b=0.0, format=None, progress=None, *, transform=None, depth=None,
               zeta=None, eta=None, tau=None):
    """Init settings for each nonlinearity in ``specs`` (default: the whole zoo).

    Columns: name, expression, the gain in the three conventions of
    :func:`vanishcalc.gain` (second_moment, std, backward), the closed form of the
    second-moment gain when known, the critical σw (χ1 = 1) at ``sigma_b`` and its q*, and —
    at σw = second-moment gain, σb = ``sigma_b`` — the fixed point q*, χ1 and ξc.

    A missing entry (None, "—" in text) means the quantity does not exist or failed; the
    reason is in ``notes``.

    With ``transform="dks"`` or ``"tat"`` and ``depth=L`` (and optionally ``zeta``, ``eta``,
    ``tau`` as for :func:`vanishcalc.transform`), the columns of :data:`TRANSFORM_COLUMNS`
    follow: a, b, c, s of φ̂(x) = s·(φ(a·x + b) + c) and, for leaky ReLU, α.

    ``format``: None returns the :class:`InitTable`; ``"md"``, ``"csv"``, ``"json"``,
    ``"latex"`` (booktabs tabular, closed forms kept: :meth:`InitTable.to_latex`) or
    ``"html"`` return that rendering as a string.  ``progress``: a bar over the rows on
    stderr (None: when stderr is a terminal; :mod:`vanishcalc.progress`).

    Examples
    --------
    >>> t = init_table(["relu", "tanh"])
    >>> print(t.to_markdown())                         # doctest: +SKIP
    """
    from ..activation import activation
    from ..maps.meanfield import MeanField
    from ..solve.criticality import critical_sigma_w
    from ..solve.bn_affine import bn_affine, bn_gradient_rate
    from ..solve.gain import gain
    from ..progress import bar
    specs, sb = _init_table_iv(specs, sigma_b)
    targets = {"zeta": zeta, "eta": eta, "tau": tau}
    method = _transform_columns_iv(transform, depth, targets)
    columns = COLUMNS + (TRANSFORM_COLUMNS if method else ())
    if format is not None and format not in FORMATS:
        raise VanishcalcError(f"init_table: format = {format!r} is unknown; use None (the "
                              f"InitTable) or one of {', '.join(map(repr, FORMATS))}")
    rows, notes, exact = [], {}, ExactForms()
    meter = bar(len(specs), "init table", progress, unit="φ")
    for spec in specs:
        meter.update(0)
        act = activation(spec)
        row = dict.fromkeys(columns)
        row["name"] = act.name
        row["expression"] = sympy.sstr(act.expr)
        exact.add(f"{act.name}.expression", act.expr)

        def attempt(key, fn):
            try:
                result = fn()
            except (VanishcalcError, NotImplementedError) as exc:
                notes[f"{act.name}.{key}"] = str(exc).splitlines()[0]
                return None
            for k, source in _exact_sources(act.name, key, result).items():
                exact.add(k, source)
            return result
        g = attempt("gain_second_moment", lambda: gain(act, "second_moment"))
        row["gain_second_moment"] = None if g is None else float(g)
        row["closed_form"] = None if g is None or g.exact is None else sympy.sstr(g.exact)
        for conv in ("std", "backward"):
            v = attempt(f"gain_{conv}", lambda conv=conv: gain(act, conv))
            row[f"gain_{conv}"] = None if v is None else float(v)
        cp = attempt("critical_sigma_w", lambda: critical_sigma_w(act, sb))
        if cp is not None:
            row["critical_sigma_w"] = float(cp.sigma_w)
            row["critical_q_star"] = None if cp.q_star is None else float(cp.q_star)
            if cp.q_star is None:
                notes[f"{act.name}.critical_q_star"] = "every q is a fixed point (positively homogeneous φ)"
            if cp.limit == "q*=0":
                # not a fixed point with q* > 0 like the other rows: say so next to the number
                notes[f"{act.name}.critical_sigma_w"] = (
                    f"q* = 0 limit: at σb = 0 χ1 = 1 only as q* → 0; at this σw q decays to 0 "
                    f"with depth (q-map slope → 1, marginal), the edge of chaos of "
                    f"Poole et al. 2016 at σb = 0, not a fixed point with q* > 0")
        if g is not None:
            mf = MeanField(act, float(g), sb)
            q = attempt("q_star", mf.q_star)
            if q is not None:
                row["q_star"] = float(q)
                chi = attempt("chi1", mf.chi1)
                row["chi1"] = None if chi is None else float(chi)
                xi = attempt("xi_c", mf.xi_c)
                row["xi_c"] = None if xi is None else float(xi)
        # Per-layer squared-gradient growth of a deep BatchNorm net (Yang et al. 2019), and the
        # γ that brings it to 1.05 at β = 0 (notes/normalization.md).
        r = attempt("bn_rate", lambda: bn_gradient_rate(act))
        row["bn_rate"] = None if r is None else float(r)
        a = attempt("bn_gamma_105", lambda: bn_affine(act, rate=1.05))
        row["bn_gamma_105"] = None if a is None else a.gamma
        if method:
            cells = attempt("transform_input_scale",
                            lambda: _transform_cells(act, method, depth, targets))
            if cells is not None:
                row.update(cells)
        rows.append(row)
        meter.update(1)
    meter.close()
    table = InitTable(rows=rows, sigma_b=sb, notes=notes, exact=exact,
                      columns=columns)
    return table if format is None else getattr(table, FORMATS[format])()
