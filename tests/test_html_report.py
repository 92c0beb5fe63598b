"""The HTML report (--html): self-contained, reads at a glance (verdict and root cause on top,
contents, findings linked to their ladders, connections and Wireshark filters), rendered by a real
headless Chromium, and packet text (a banner or EHLO name holding markup) is shown as text, never run.

Every bundled capture and every path set of captures/MANIFEST.toml is rendered once (module
fixture) and each page property is checked on all of them; what a page must show is computed from
the JSON document of the same run and from the manifest, never written down per sample."""

from __future__ import annotations

import html as htmllib
import re
import shutil
import subprocess
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dsrdiag.report import markup, wireshark
from dsrdiag.report.html import MAX_LINKS, health_bar, time_span
from tests.conftest import CAPTURES, run_cli, tshark_fields

HOSTILE = "<script>document.title='pwned'</script>"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MANIFEST = tomllib.loads((CAPTURES / "MANIFEST.toml").read_text())
VANTAGES = ("client", "fw-out", "fw-in", "lb", "be1", "be2")
CASES = {**{f"capture:{c['file']}": [str(CAPTURES / c["file"]), *c["args"]] for c in MANIFEST["capture"]},
         **{f"set:{s['name']}": [f"{v}={CAPTURES / 'paths' / s['name'] / (v + '.pcap')}" for v in VANTAGES]
            for s in MANIFEST["set"]}}
BYPASS_VIA = {f"set:{s['name']}": s["bypass_via"] for s in MANIFEST["set"] if "bypass_via" in s}
HEALTHY = [k for k, c in [*((f"capture:{c['file']}", c) for c in MANIFEST["capture"]),
                          *((f"set:{s['name']}", s) for s in MANIFEST["set"])]
           if c["exit"] == 0 and not c["findings"]]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (CI installs Debian's package: .ci/run)")
    return path


def run_chromium(chromium: str, tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=90)


class Tags(HTMLParser):
    """Every element and the page's text, as a browser's parser sees the file."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Tags:
    t = Tags()
    t.feed(html)
    t.close()
    return t


def text_of(fragment: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", fragment))


def write_report(tmp_path: Path, *captures: str) -> Path:
    out = tmp_path / "report.html"
    r = run_cli("analyze", *captures, "--html", str(out), "--format", "json")
    assert r.code in (0, 1), r.err
    return out


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, tuple[str, dict]]:
    """Every bundled capture and path set: (the HTML page, the JSON document of the same run)."""
    out = {}
    for name, args in CASES.items():
        page = tmp_path_factory.mktemp("html") / "report.html"
        r = run_cli("analyze", *args, "--html", str(page), "--format", "json")
        assert r.code in (0, 1, 3), (name, r.err)
        out[name] = (page.read_text(encoding="utf-8"), r.json())
    return out


def section(page: str, start: str, end: str) -> str:
    i = page.index(start)
    return page[i:page.index(end, i)]


def finding_blocks(page: str) -> dict[str, str]:
    """Each finding's part of the page, by finding id."""
    blocks = {}
    for m in re.finditer(r'<div class="finding" id="([^"]+)">', page):
        end = min(x for x in (page.find('<div class="finding" ', m.end()), page.find("<h2", m.end())) if x != -1)
        blocks[htmllib.unescape(m.group(1))] = page[m.start():end]
    return blocks


def connection_rows(page: str) -> dict[str, str]:
    """Each listed connection's table row, by connection uid."""
    rows = {}
    for m in re.finditer(r'<tr id="conn-\d+">(.*?)</tr>', page, re.S):
        uid = re.search(r'<span class="dim mono">([^<]*)</span>', m.group(1))
        rows[htmllib.unescape(uid.group(1))] = m.group(0)
    return rows


@pytest.mark.parametrize("case", CASES)
def test_page_parses_and_every_internal_link_reaches_an_anchor(pages, case):
    page, _ = pages[case]
    t = parse(page)
    ids = [a["id"] for _, a in t.tags if "id" in a]
    assert len(ids) == len(set(ids)), "an id used twice"
    links = [a["href"] for _, a in t.tags if a.get("href", "").startswith("#")]
    assert links
    missing = sorted({h for h in links if h[1:] not in set(ids)})
    assert not missing, missing


@pytest.mark.parametrize("case", CASES)
def test_verdict_and_contents_come_first_and_list_every_section(pages, case):
    page, _ = pages[case]
    t = parse(page)
    order = [a.get("id") for _, a in t.tags if a.get("id")]
    assert order[:3] == ["verdict", "causes", "toc"]
    toc = section(page, '<nav class="toc"', "</nav>")
    targets = re.findall(r'href="#([^"]+)"', toc)
    for anchor in ("verdict", "causes", "findings", "backends", "ladders", "connections", "captures"):
        assert anchor in targets and anchor in order


@pytest.mark.parametrize("case", CASES)
def test_root_cause_title_and_backend_are_in_the_top_section(pages, case):
    page, doc = pages[case]
    top = text_of(section(page, 'id="verdict"', '<nav class="toc"'))
    raw = section(page, 'id="verdict"', '<nav class="toc"')
    assert doc["verdict"]["text"] in top
    by_id = {f["id"]: f for f in doc["findings"]}
    for cid in doc["verdict"]["causes"]:
        f = by_id[cid]
        assert f'href="#{cid}"' in raw and f["title"] in top
        if f["backend"]:
            assert f["backend"]["name"] in top
        for x in f["consequences"]:  # what it explains, linked
            assert f'href="#{x}"' in raw
        flows = [i for i, fl in enumerate(doc.get("correlation", {}).get("flows", []))
                 if set(fl["connections"]) & set(f["connections"]) and f'id="ladder-{i}"' in page]
        for i in flows[:MAX_LINKS]:  # and where to see it
            assert f'href="#ladder-{i}"' in raw
    if not doc["verdict"]["causes"]:  # must not fire: nothing named as a cause
        assert "No root cause" in top and "Root cause" not in top.replace("No root cause", "")


@pytest.mark.parametrize("case", CASES)
def test_each_findings_filters_are_wiresharks_filter_of_its_frames_per_capture(pages, case):
    page, doc = pages[case]
    blocks = finding_blocks(page)
    assert set(blocks) == {f["id"] for f in doc["findings"]}
    for f in doc["findings"]:
        want: dict[str, list[int]] = {}
        for x in f["evidence"]:
            if "frame" in x:
                want.setdefault(x["capture"], []).append(x["frame"])
        got = {htmllib.unescape(c): htmllib.unescape(v)
               for c, v in re.findall(r'<code class="filter" data-capture="([^"]*)">([^<]*)</code>', blocks[f["id"]])}
        assert got == {c: wireshark.frames_filter(fr) for c, fr in want.items()}, f["id"]
        cmds = [htmllib.unescape(v) for v in re.findall(r'<code class="cmd">([^<]*)</code>', blocks[f["id"]])]
        assert cmds == [wireshark.tshark_command(c, wireshark.frames_filter(fr)) for c, fr in want.items()]


@pytest.mark.parametrize("case", CASES)
def test_findings_link_their_connections_and_ladders_and_connection_rows_link_back(pages, case):
    page, doc = pages[case]
    blocks, rows = finding_blocks(page), connection_rows(page)
    for f in doc["findings"]:
        listed = [u for u in f["connections"] if u in rows]
        assert listed or not f["connections"], f"none of {f['id']}'s connections is listed"
        for n, uid in enumerate(listed):
            anchor = re.search(r'<tr id="([^"]+)">', rows[uid]).group(1)
            assert (f'href="#{anchor}"' in blocks[f["id"]]) == (n < MAX_LINKS)  # the rest are counted
            assert f'href="#{f["id"]}"' in rows[uid]
        for other in f["consequences"] + ([f["explained_by"]] if f["explained_by"] else []):
            assert f'href="#{other}"' in blocks[f["id"]]
        if "correlation" in doc:  # every drawn flow of its connections is linked from the finding
            flows = [i for i, fl in enumerate(doc["correlation"]["flows"]) if set(fl["connections"]) & set(f["connections"])]
            for i in flows:
                if f'id="ladder-{i}"' in page:
                    assert f'href="#ladder-{i}"' in blocks[f["id"]]


@pytest.mark.parametrize("case", CASES)
def test_each_connection_row_carries_wiresharks_conversation_filter(pages, case):
    page, doc = pages[case]
    rows = connection_rows(page)
    assert len(rows) == min(len(doc["connections"]), 300)
    by_uid = {c["uid"]: c for c in doc["connections"]}
    for uid, row in rows.items():
        c = by_uid[uid]
        want = wireshark.conn_filter(c["client"]["ip"], c["client"]["port"], c["server"]["ip"], c["server"]["port"])
        assert f'<code class="filter">{htmllib.escape(want)}</code>' in row


@pytest.mark.parametrize("case", CASES)
def test_no_script_no_external_url_and_fix_texts_set_code_as_code(pages, case):
    page, doc = pages[case]
    t = parse(page)
    assert not [tag for tag, _ in t.tags if tag in ("script", "iframe", "object", "embed", "link", "img")]
    for tag, a in t.tags:  # nothing fetched from anywhere (an SVG's xmlns names a namespace and url(#id) a marker of the page: neither fetches)
        for k, v in a.items():
            if k != "xmlns" and v and re.search(r"(https?:|//|url\((?!#))", v) and k != "title":
                pytest.fail(f"{tag} {k}={v!r}")
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert styles and not any(re.search(r"url\(|@import|@font-face", s) for s in styles)
    blocks = finding_blocks(page)
    for f in doc["findings"]:
        fixes = re.findall(r'<div class="fix">(.*?)</div>', blocks[f["id"]], re.S)
        sources = [s for s in (f["fix"]["windows"], f["fix"]["linux"], f["fix"]["load_balancer"]) if s]
        assert len(fixes) == len(sources)
        for rendered, source in zip(fixes, sources):
            assert "`" not in rendered
            assert ("<code>" in rendered) == ("`" in source)


@pytest.mark.parametrize("case", CASES)
def test_wrong_source_reply_is_labelled_with_its_real_source_address_on_the_ladder(pages, case):
    page, doc = pages[case]
    ladders = " ".join(text_of(s) for s in re.findall(r'<svg [^>]*class="ladder".*?</svg>', page, re.S))
    labelled = set(re.findall(r"from (\S+) \(not the VIP\)", ladders))
    vips = {v["ip"] for v in doc["topology"]["vips"]}
    conns = {c["uid"]: c for c in doc["connections"]}
    want = set()
    if "correlation" in doc:
        want = {conns[u]["server"]["ip"] for f in doc["findings"] if f["kind"] == "return_source_not_vip"
                for u in f["connections"] if conns[u]["server"]["ip"] not in vips}
    assert labelled == want  # and none where no wrong-source finding is (nat: replies from real addresses are right)
    if case == "set:wrong_source":
        assert want  # the sample that must fire does


@pytest.mark.parametrize("case", CASES)
def test_bypass_is_labelled_with_the_gateway_mac_at_the_vantages_it_skipped(pages, case):
    page, _ = pages[case]
    labels = set(re.findall(r'<text class="bypass"[^>]*>via ([^ <]+) \(bypass\)</text>', page))
    assert labels == ({BYPASS_VIA[case]} if case in BYPASS_VIA else set())


@pytest.mark.parametrize("case", CASES)
def test_every_lost_packet_is_crossed_and_named_where_it_was_last_seen(pages, case):
    page, doc = pages[case]
    drawn = [fl for i, fl in enumerate(doc.get("correlation", {}).get("flows", [])) if f'id="ladder-{i}"' in page]
    lost = [p for fl in drawn for p in fl["packets"] if p["lost_before"] and p["lost_before"] in fl["vantages"]]
    assert page.count('<path class="lost"') == len(lost)
    ladders = text_of(" ".join(re.findall(r'<svg [^>]*class="ladder".*?</svg>', page, re.S)))
    for p in lost:
        assert f"last seen at {p['last_seen']}, not at {p['lost_before']}" in ladders


@pytest.mark.parametrize("case", HEALTHY)
def test_healthy_page_has_no_red_cross_no_bypass_and_no_error(pages, case):
    page, doc = pages[case]
    assert doc["verdict"]["state"] == "healthy"
    assert '<path class="lost"' not in page and "(bypass)" not in page and "not the VIP" not in page
    assert 'class="sev sev-error"' not in page and 'class="decisive"' not in page
    assert 'class="top ok"' in page


@pytest.mark.parametrize("case", CASES)
def test_backend_health_is_a_bar_with_its_numbers_beside_it(pages, case):
    page, doc = pages[case]
    body = text_of(section(page, 'id="backends"', 'id="topology"'))
    for r in doc["backends"]:
        assert f"{r['completed']} completed, {r['failed']} failed" in body
    assert section(page, 'id="backends"', 'id="topology"').count('<svg class="bar"') == len(doc["backends"])


@pytest.mark.parametrize("case", CASES)
def test_capture_time_span_is_one_unbreakable_line(pages, case):
    page, doc = pages[case]
    caps = section(page, 'id="captures"', 'id="connections"')
    spans = re.findall(r'<span class="nowrap" title="[^"]*">([^<]*)</span>', caps)
    assert len(spans) == len(doc["captures"])
    for s, c in zip(spans, doc["captures"]):
        if c["first_ts"]:
            assert s.startswith(c["first_ts"][:10]) and re.search(r"\(\d+(\.\d)? (s|min|h)\)$", htmllib.unescape(s)), s
    assert ".nowrap{white-space:nowrap}" in page


def test_time_span_names_the_date_once_within_a_day_and_twice_across_midnight():
    day = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
    assert time_span(day, day + 12_345_000_000) == "2023-11-14 22:13:20.000 \u2013 22:13:32.345 (12.3 s)"
    assert time_span(day, day + 7_200 * 10**9) == "2023-11-14 22:13:20.000 \u2013 2023-11-15 00:13:20.000 (2.0 h)"
    assert time_span(None, None) == "-"


def test_health_bar_draws_completed_and_failed_in_proportion_and_says_them():
    bar = health_bar(3, 1, width=120)
    assert 'width="90" height="10" fill="#2da44e"' in bar and 'x="90" width="30"' in bar
    assert "3 completed, 1 failed" in bar
    assert "#cf222e" not in health_bar(4, 0)  # must not fire: no red for no failure
    assert "0 completed, 0 failed" in health_bar(0, 0)


def test_markup_sets_backticks_as_code_and_escapes_everything_else():
    assert markup.to_html("Run `ip addr add VIP/32 dev lo` now.") == "<p>Run <code>ip addr add VIP/32 dev lo</code> now.</p>"
    assert markup.to_html("a <b>x</b> `<script>` & b") == "<p>a &lt;b&gt;x&lt;/b&gt; <code>&lt;script&gt;</code> &amp; b</p>"
    assert markup.to_html("one ` alone") == "<p>one ` alone</p>"  # an unmatched backtick stays text
    assert markup.to_html("first\n\nsecond") == "<p>first</p><p>second</p>"
    assert markup.to_html("Do:\n- `a`\n- b\n1. c") == "<p>Do:</p><ul><li><code>a</code></li><li>b</li></ul><ol><li>c</li></ol>"
    assert markup.to_html("x - y * z") == "<p>x - y * z</p>"  # must not fire: dashes inside a line are text


def test_finding_filters_select_exactly_the_cited_frames_in_tshark(pages, tshark):
    page, doc = pages["set:wrong_source"]
    checked = 0
    for f in doc["findings"]:
        by_cap: dict[str, set[int]] = {}
        for x in f["evidence"]:
            if "frame" in x:
                by_cap.setdefault(x["capture"], set()).add(x["frame"])
        for cap, frames in by_cap.items():
            flt = wireshark.frames_filter(frames)
            assert htmllib.escape(flt) in finding_blocks(page)[f["id"]]
            got = {int(r[0]) for r in tshark_fields(tshark, Path(cap), flt, "frame.number")}
            assert got == frames
            checked += 1
    assert checked


def test_markup_in_banner_and_ehlo_is_escaped_in_the_file(tmp_path):
    page = write_report(tmp_path, str(CAPTURES / "hostile_banner.pcap"))
    t = parse(page.read_text())
    assert not [tag for tag, _ in t.tags if tag in ("script", "img", "iframe", "object", "embed")]
    assert not [a for _, a in t.tags if any(k.startswith("on") for k in a)]
    text = "".join(t.text)
    assert HOSTILE in text and "<b onmouseover=alert(1)>client</b>" in text


def test_hostile_text_on_a_ladder_is_shown_as_text(tmp_path):
    cap = str(CAPTURES / "hostile_banner.pcap")
    page = write_report(tmp_path, f"client={cap}", f"lb={cap}")
    raw = page.read_text()
    svgs = re.findall(r'<svg [^>]*class="ladder".*?</svg>', raw, re.S)
    assert len(svgs) == 1
    t = parse(svgs[0])
    assert not [tag for tag, _ in t.tags if tag in ("script", "b", "foreignobject")]
    shown = "".join(t.text)
    assert "EHLO <b onmouseover=alert(1)>client</b>" in shown and "220 mx1.example.net <script>document.title=" in shown


def test_report_is_self_contained_and_forbids_scripts(tmp_path):
    page = write_report(tmp_path, *(f"{v}={CAPTURES / 'paths' / 'wrong_source' / (v + '.pcap')}" for v in VANTAGES))
    t = parse(page.read_text())
    csp = [a["content"] for tag, a in t.tags if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    for tag, a in t.tags:  # nothing fetched from anywhere
        assert not any(a.get(k, "").startswith(("http:", "https:", "//")) for k in ("src", "href")), (tag, a)


def test_chromium_renders_the_hostile_report_and_runs_nothing(chromium, tmp_path):
    page = write_report(tmp_path, str(CAPTURES / "hostile_banner.pcap"))
    r = run_chromium(chromium, tmp_path, page, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = parse(r.stdout)
    titles = [d for d in dom.text if "dsrdiag report" in d]
    assert titles and not any("pwned" in d for d in titles)  # the banner's script did not set the title
    assert not [tag for tag, _ in dom.tags if tag in ("script", "img")]
    assert HOSTILE in "".join(dom.text)  # shown to the reader, as text
    assert any(a.get("id") == "verdict" for _, a in dom.tags)


def test_chromium_draws_a_ladder_per_connection_with_the_drop_marked(chromium, pages, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(pages["set:wrong_source"][0], encoding="utf-8")
    r = run_chromium(chromium, tmp_path, page, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = parse(r.stdout)
    ladders = [a for tag, a in dom.tags if tag == "svg" and a.get("class") == "ladder"]
    assert len(ladders) == 4  # one per connection seen at two vantages or more
    assert any("not seen at fw-out" in d for d in dom.text)  # the dropped SYN-ACK's cross
    assert any("from 192.0.2.12 (not the VIP)" in d for d in dom.text)


@pytest.mark.parametrize("width", [1280, 800])
@pytest.mark.parametrize("case", ["set:wrong_source", "set:asym"])
def test_chromium_screenshots_the_page_at_desktop_and_narrow_widths(chromium, pages, tmp_path, case, width):
    """Screenshots to look at (the two pages with every ladder mark); the test proves Chromium lays
    the page out at both widths. What a person checks on them: docs/html.md."""
    page = tmp_path / "report.html"
    page.write_text(pages[case][0], encoding="utf-8")
    shot = tmp_path / f"{case.split(':')[1]}-{width}.png"
    r = run_chromium(chromium, tmp_path, page, f"--screenshot={shot}", f"--window-size={width},2000", "--hide-scrollbars")
    assert r.returncode == 0, r.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == width and len(png) > 20_000


def test_html_output_may_not_overwrite_an_input_capture(tmp_path):
    cap = tmp_path / "x.pcap"
    cap.write_bytes((CAPTURES / "healthy.pcap").read_bytes())
    before = cap.read_bytes()
    r = run_cli("analyze", str(cap), "--html", str(cap))
    assert r.code == 2 and "never overwritten" in r.err and cap.read_bytes() == before


def test_wrong_source_replies_past_a_records_kept_notes_are_still_named_by_their_flow(tmp_path):
    """A record keeps its first packets only (track/conn.py MAX_NOTES): replies past them are
    matched by the record's flow (client address, port, service port, ISN) and its time span."""
    from dataclasses import replace

    from dsrdiag.capture.sources import parse_sources
    from dsrdiag.core import topology as topo
    from dsrdiag.jobs.analyze import analyze
    from dsrdiag.report import html as page
    from dsrdiag.track.records import NoteBlock

    folder = CAPTURES / "paths" / "wrong_source"
    report = analyze(parse_sources([f"{v}={folder / (v + '.pcap')}" for v in VANTAGES]), topo.build(), jobs=1)
    full = page.render(report)
    assert full.count("from 192.0.2.12 (not the VIP)") == 3
    cut = replace(report, connections=tuple((c._replace(packets=NoteBlock()), b) for c, b in report.connections))
    assert page.render(cut).count("from 192.0.2.12 (not the VIP)") == 3
