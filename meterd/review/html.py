"""The review, what-if and suggestion as one self-contained HTML page.

Pure.  Drawn from the same mappings as the JSON output
(:mod:`meterd.review.render`), with inline CSS only: no script, no network,
no external asset, so the file can be mailed, archived and opened offline.
Every figure carries an ``id`` or a ``data-`` attribute, so a test (or a
script) can check the page says what the JSON says.
"""

from __future__ import annotations

from html import escape
from typing import Any

from meterd.policy.permissions import BY_BIT
from meterd.review.render import Data

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111;background:#fff}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}
th.p{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;white-space:nowrap}
td.c{width:22px;height:22px;text-align:center;padding:0}
.used{background:#2e8b57;color:#fff}.unused{background:#f0b429}.refused{background:#d64545;color:#fff}
.none{background:#eee;color:#999}.warn{background:#d64545;color:#fff;padding:6px}
.figure{font-weight:bold}
"""


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _figure(name: str, value: object) -> str:
    return f'<span class="figure" id="{escape(name)}">{escape(str(value))}</span>'


def _window(window: Data) -> list[str]:
    out = [
        "<p>Log "
        + ("verified" if window["verified"] else "<strong>does not verify</strong>")
        + (", MACs checked" if window["mac_checked"] else ", MACs not checked")
        + f"; records {_figure('first-seq', window['first_seq'])}..{_figure('last-seq', window['last_seq'])}"
        + f" ({_figure('window-records', window['records'])} in the window), "
        + f"{escape(window['first_time'])} .. {escape(window['last_time'])}.</p>"
    ]
    if window["warning"]:
        out.insert(0, f'<p class="warn">{escape(window["warning"])}</p>')
    return out


def _table(header: list[str], rows: list[list[Any]], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def review_html(data: Data) -> str:
    """The matrix coloured by used / held-unused / refused / neither, then the findings with evidence."""
    bits = sorted(BY_BIT)
    by_principal: dict[str, dict[str, Data]] = {}
    for r in data["rows"]:
        by_principal.setdefault(r["principal"], {})[r["permission"]] = r
    totals = data["totals"]
    body = ["<h1>Access review</h1>", *_window(data["window"])]
    body.append(
        f"<p>{_figure('total-uses', totals['uses'])} uses; "
        f"{_figure('used-grants', totals['used_grants'])} of "
        f"{_figure('grants', totals['grants'])} grants used; "
        f"{_figure('findings', totals['findings'])} findings.</p>"
    )
    head = "".join(f'<th class="p">{escape(BY_BIT[b].value)}</th>' for b in bits)
    rows = []
    for name, cells in by_principal.items():
        tds = []
        for b in bits:
            cell = cells[BY_BIT[b].value]
            tip = f"{name} {cell['permission']}: {cell['state']}, {cell['uses']} uses"
            if cell["last_use"]:
                tip += f", last {cell['last_use']} (seq {cell['last_seq']})"
            tds.append(
                f'<td class="c {cell["state"]}" title="{escape(tip)}" data-principal="{escape(name)}" '
                f'data-permission="{cell["permission"]}" data-uses="{cell["uses"]}">'
                f"{cell['uses'] if cell['uses'] else ''}</td>"
            )
        rows.append(f"<tr><td>{escape(name)}</td>{''.join(tds)}</tr>")
    body.append(f'<h2>Principal &times; permission</h2><table id="matrix"><tr><th>principal</th>{head}</tr>')
    body += rows
    body.append("</table>")
    body.append(
        '<p><span class="used">&nbsp;used&nbsp;</span> <span class="unused">&nbsp;held, unused&nbsp;</span> '
        '<span class="refused">&nbsp;refused&nbsp;</span> <span class="none">&nbsp;neither&nbsp;</span> '
        "(numbers: uses in the window)</p>"
    )
    body.append("<h2>Findings</h2>")
    body.append(
        _table(
            ["kind", "principal", "subject", "count", "records", "evidence"],
            [
                [
                    f["kind"],
                    f["principal"] or "",
                    f["subject"] or "",
                    f["count"],
                    " ".join(map(str, f["seqs"])),
                    f["message"],
                ]
                for f in data["findings"]
            ],
            "findings-table",
        )
    )
    return _page("meterd access review", body)


def what_if_html(data: Data) -> str:
    """Losses, gains and what the replay could not re-run."""
    totals = data["totals"]
    body = ["<h1>What if: candidate policy replayed against the log</h1>", *_window(data["window"])]
    body.append(
        f"<p>{_figure('replayed', data['replayed'])} decisions replayed "
        f"({_figure('distinct', data['distinct'])} distinct); "
        f"{_figure('lost', totals['lost'])} requests would be refused, "
        f"{_figure('gained', totals['gained'])} newly allowed, "
        f"{_figure('not-replayed', totals['not_replayed'])} not replayable.</p>"
    )
    header = ["principal", "permission", "channel", "requests", "last use", "record", "why"]
    for title, key in (("Would lose used access", "losses"), ("Would gain access", "gains")):
        body.append(f"<h2>{title}</h2>")
        body.append(
            _table(
                header,
                [
                    [
                        s["principal"],
                        s["permission"],
                        s["channel"],
                        s["count"],
                        s["last_time"],
                        s["last_seq"],
                        ", ".join(s["why"]),
                    ]
                    for s in data[key]
                ],
                f"{key}-table",
            )
        )
    body.append("<h2>Not replayed (stateful rules, summaries)</h2>")
    body.append(
        _table(
            ["principal", "permission", "channel", "rule", "logged", "requests", "candidate policy"],
            [
                [
                    n["principal"],
                    n["permission"] or "",
                    n["channel"],
                    n["rule"],
                    n["outcome"],
                    n["count"],
                    n["candidate"] or "",
                ]
                for n in data["not_replayed"]
            ],
            "not-replayed-table",
        )
    )
    return _page("meterd what-if", body)


def suggest_html(data: Data) -> str:
    """The proposed roles and the diff."""
    body = ["<h1>Least-privilege suggestion</h1>", *_window(data["window"])]
    body.append(
        _table(
            ["subject", "proposed roles", "current roles", "used"],
            [
                [
                    s["subject"],
                    ", ".join(s["roles"]) + (" (new)" if s["custom"] else ""),
                    "unknown" if data["baseline"] == "builtin" else ", ".join(s["was"]),
                    ", ".join(s["used"]),
                ]
                for s in data["suggestions"]
            ],
            "suggestions-table",
        )
    )
    body.append("<h2>Diff against the policy</h2><pre>" + escape("\n".join(data["diff"])) + "</pre>")
    return _page("meterd suggestion", body)
