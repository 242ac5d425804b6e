"""Rendering the report's documents (src/studies/base.py: Section, Table, Verdict) as HTML and Markdown."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from src.studies.base import Section, Table, Verdict


def table_md(t: Table) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in t.rows]
    lines = ["| " + " | ".join(t.head) + " |", "|" + "---|" * len(t.head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def table_html(t: Table) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in t.head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in t.rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _verdict_html(v: Verdict) -> str:
    cls = v.verdict.replace(" ", "-")
    return (f'<div class="verdict {cls}"><p class="claim"><b>Claim.</b> {html.escape(v.claim)}</p>'
            f'<p><span class="badge">{html.escape(v.verdict.upper())}</span> {html.escape(v.reason)}</p></div>')


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def section_html(sec: Section) -> str:
    """A study's section of index.html."""
    parts = [f'<section id="{html.escape(sec.study)}"><h2>{html.escape(sec.title)} '
             f'<code>{html.escape(sec.study)}</code></h2>']
    parts += [_verdict_html(v) for v in sec.verdicts]
    if not sec.verdicts:
        parts.append("<p><i>No claim is registered for this study: numbers only.</i></p>")
    parts += [f"<p class=note><b>How this verdict is computed.</b> {html.escape(r)}</p>" for r in sec.rules if r]
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in sec.notes]
    for caption, t in sec.tables:
        parts.append(f"<h3>{html.escape(caption)}</h3>{table_html(t)}")
    parts += [_img(p, caption) for caption, p in sec.figures]
    parts.append("</section>")
    return "".join(parts)


def section_md(sec: Section) -> str:
    """A study's page, `<study>.md` (figures referenced under figures/)."""
    out = [f"# {sec.title} (`{sec.study}`)", ""]
    for v in sec.verdicts:
        out += [f"**Claim.** {v.claim}", "", f"**Verdict: {v.verdict.upper()}.** {v.reason}", ""]
    if not sec.verdicts:
        out += ["_No claim is registered for this study: numbers only._", ""]
    out += [f"_How this verdict is computed._ {r}\n" for r in sec.rules if r]
    out += [f"{n}\n" for n in sec.notes]
    for caption, t in sec.tables:
        out += [f"## {caption}", "", table_md(t), ""]
    out += [f"![{caption}](figures/{p.name})\n" for caption, p in sec.figures]
    return "\n".join(out).rstrip() + "\n"


STYLE = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
         "th{background:#f4f4f4}img{max-width:100%;display:block}figure{margin:1em 0}"
         "figcaption{font-size:12px;color:#555}.verdict{border-left:6px solid #999;padding:.2em .8em;margin:.6em 0;"
         "background:#fafafa}.confirmed{border-color:#2a8a2a}.refuted{border-color:#c0392b}"
         ".nuanced{border-color:#d4a017}.badge{font-weight:bold}.note{font-size:13px;color:#444}"
         "section{margin-bottom:3em}td.confirmed{color:#2a8a2a;font-weight:bold}td.refuted{color:#c0392b;"
         "font-weight:bold}td.nuanced{color:#a07800;font-weight:bold}")


# The principles every rule follows (each rule's own docstring, printed per study, says the rest).
PRINCIPLES = (
    "Selection on validation only: a job's rank in the tables, the 'best' job of metrics.json and every tuned "
    "learning rate are chosen on validation accuracy; test accuracy is only reported for what was chosen.",
    "Paired seeds: replica r of every arm of a comparison has seed r (the same initial draw where the initializer "
    "family allows, the same mini-batch order), so arms are compared on per-seed differences: a paired t-test "
    "(Wilcoxon's signed-rank p is computed alongside), the difference's 95% CI from Student's t.",
    "Families of tests: a verdict resting on several comparisons corrects their p-values together with Holm's "
    "step-down method; 'significantly better/worse' means Holm-adjusted p < 0.05.",
    "Equivalence: 'no difference' is never read from a non-significant test; it is claimed only when the whole 95% CI "
    "of the difference lies within ±0.02 accuracy (about 1.6 of the 80 test points of the 2-D sets), and then it "
    "wins over significance (a significant 0.001 is no difference worth a claim). Otherwise a comparison is "
    "'inconclusive'.",
    "Diverged replicas stay in every denominator: in comparisons a diverged replica scores chance accuracy "
    "(1/classes: what its non-finite outputs predict on these balanced sets); counts say 'k of n'.",
    "Two views: where arms are ranked (s1_init, s3_optim, default) each arm is trained at the preset's shared lr "
    "and at its own lr tuned on validation (8 lrs over 3.5 decades in the presets, at least 7 over 3 by SPEC; "
    "3 tuning seeds; reported on 10 fresh seeds). "
    "The tuned view decides the verdict; the reason also gives the shared-lr view and says whether the "
    "conclusion survives tuning.",
    "Course-exact studies (one deterministic replica per job) are compared with the course's table cell by cell "
    "at the table's printed precision: no significance language from n = 1.",
    "Claim labels: confirmed (every part holds), refuted (the evidence goes against it: a significant reversal, "
    "an equivalence, or a part that fails outright), nuanced (neither), no data (the rule's jobs are missing).",
)


def how_verdicts_html(sections: list[Section]) -> str:
    """The report's 'How verdicts are computed' section: the shared principles, then each study's rule."""
    items = "".join(f"<li>{html.escape(p)}</li>" for p in PRINCIPLES)
    rules = "".join(f"<tr><td>{html.escape(s.study)}</td><td>{html.escape(r)}</td></tr>"
                    for s in sections for r in s.rules if r)
    return (f'<h2 id="how-verdicts">How verdicts are computed</h2><ul>{items}</ul><table><thead><tr><th>study'
            f"</th><th>rule</th></tr></thead><tbody>{rules}</tbody></table>")


def how_verdicts_md(sections: list[Section]) -> str:
    """The same as Markdown (reports/how_verdicts.md)."""
    out = ["# How verdicts are computed", "", *(f"- {p}" for p in PRINCIPLES), "", "| study | rule |", "|---|---|"]
    out += [f"| {s.study} | {r.replace('|', '/')} |" for s in sections for r in s.rules if r]
    return "\n".join(out) + "\n"


def index_html(sections: list[Section], missing: list[str]) -> str:
    """The one self-contained page: the verdicts table, the studies not run yet, every section (images inline)."""
    rows = []
    for s in sections:
        vs = s.verdicts or [None]
        for v in vs:
            verdict = v.verdict if v else "—"
            claim = v.claim if v else "(no registered claim)"
            rows.append(f'<tr><td><a href="#{html.escape(s.study)}">{html.escape(s.study)}</a></td>'
                        f'<td class="{verdict.replace(" ", "-")}">{html.escape(verdict)}</td>'
                        f"<td>{html.escape(claim)}</td></tr>")
    summary = ("<h2>Verdicts</h2><table><thead><tr><th>study</th><th>verdict</th><th>claim</th></tr></thead>"
               f"<tbody>{''.join(rows)}</tbody></table>")
    miss = ""
    if missing:
        miss = ("<p class=note>Not in this report (no <code>results/&lt;study&gt;</code> yet; run <code>dvc repro"
                f"</code>): {html.escape(', '.join(missing))}.</p>")
    intro = ("<p>Each claim from the source articles and course, its verdict computed from the data by a rule in "
             "<code>src/studies/&lt;study&gt;.py</code> (see <a href=\"#how-verdicts\">How verdicts are computed</a>), "
             "the tables (mean ± 95% CI over seeds) and the figures.</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nnlab report</title>"
            f"<style>{STYLE}</style></head><body><h1>nnlab report</h1>{intro}{summary}{miss}"
            f"{how_verdicts_html(sections)}{''.join(section_html(s) for s in sections)}</body></html>\n")
