"""The HTML report (--html): self-contained, rendered by a real headless Chromium, and packet text
(a banner or EHLO name holding markup) is shown as text, never run."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, run_cli

HOSTILE = "<script>document.title='pwned'</script>"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> Tags:
    t = Tags()
    t.feed(html)
    return t


def write_report(tmp_path: Path, *captures: str) -> Path:
    out = tmp_path / "report.html"
    r = run_cli("analyze", *captures, "--html", str(out), "--format", "json")
    assert r.code in (0, 1), r.err
    return out


def test_markup_in_banner_and_ehlo_is_escaped_in_the_file(tmp_path):
    page = write_report(tmp_path, str(CAPTURES / "hostile_banner.pcap"))
    t = parse(page.read_text())
    assert not [tag for tag, _ in t.tags if tag in ("script", "img", "iframe", "object", "embed")]
    assert not [a for _, a in t.tags if any(k.startswith("on") for k in a)]
    text = "".join(t.text)
    assert HOSTILE in text and "<b onmouseover=alert(1)>client</b>" in text


def test_report_is_self_contained_and_forbids_scripts(tmp_path):
    page = write_report(tmp_path, *(f"{v}={CAPTURES / 'paths' / 'wrong_source' / (v + '.pcap')}"
                                    for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")))
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
    assert any(tag == "div" and a.get("id") == "verdict" for tag, a in dom.tags)


def test_chromium_draws_a_ladder_per_connection_with_the_drop_marked(chromium, tmp_path):
    vs = ("client", "fw-out", "fw-in", "lb", "be1", "be2")
    page = write_report(tmp_path, *(f"{v}={CAPTURES / 'paths' / 'wrong_source' / (v + '.pcap')}" for v in vs))
    r = run_chromium(chromium, tmp_path, page, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = parse(r.stdout)
    ladders = [a for tag, a in dom.tags if tag == "svg" and a.get("class") == "ladder"]
    assert len(ladders) == 4  # one per connection seen at two vantages or more
    assert any("not seen at fw-out" in d for d in dom.text)  # the dropped SYN-ACK's cross
    shot = tmp_path / "page.png"
    r = run_chromium(chromium, tmp_path, page, f"--screenshot={shot}", "--window-size=1300,2000")
    assert r.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_html_output_may_not_overwrite_an_input_capture(tmp_path):
    cap = tmp_path / "x.pcap"
    cap.write_bytes((CAPTURES / "healthy.pcap").read_bytes())
    before = cap.read_bytes()
    r = run_cli("analyze", str(cap), "--html", str(cap))
    assert r.code == 2 and "never overwritten" in r.err and cap.read_bytes() == before
