"""The built HTML docs, as a reader sees them, offline.

Builds the Sphinx docs (warning-free, ``-W``) into a temporary folder, checks every local
link and anchor of every page and the API index, then opens a few key pages in headless
Chromium (driven over the DevTools protocol on a pipe: no download, no network) and
asserts what a reader would notice:

- the maths is typeset: MathJax ran from the bundled copy, no raw ``\\(``, ``\\[`` or
  ``$$`` is left in the rendered text, and no formula failed to parse;
- every image loaded (``naturalWidth > 0``);
- the page asked nothing of the network (only ``file:`` and ``data:`` URLs), threw no
  JavaScript error and every resource it asked for loaded;
- a link to an anchor lands on an element.

Screenshots of those pages go to ``<build>/_screenshots/``. ``DOCS_BROWSER_OUT=<dir>``
builds there instead of a temporary folder (to look at the pages and screenshots
afterwards). Without Chromium (``apt-get install chromium``) the browser tests skip with a
message (``DOCS_BROWSER_REQUIRED=1``, as in CI, makes that a failure); ``CHROMIUM=<path>``
names another Chromium or Chrome binary.
"""

from __future__ import annotations

import base64
import fcntl
import html.parser
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import torch_artic
import torch_artic.testing

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# page name -> the URL (relative to the build) a reader would open
PAGES = {
    "index": "index.html",
    "tutorial": "tutorial.html",
    "sketch": "sketch.html",
    "tps": "tps.html",
    "soft_argmax2d": "keypoints.html#torch_artic.soft_argmax2d",
    "api": "api.html",
}
MATH_PAGES = {"tutorial", "sketch", "tps", "soft_argmax2d"}  # pages with maths

# Public classes that no page documents yet (the API index shows them without a link).
# The test asserts this is exactly the set, so documenting one means removing it here.
UNLINKED: set[str] = set()  # every public name links to its documentation

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
WIDTH, HEIGHT = 1280, 1400


def _skip(reason: str):
    """Skip, or fail where the check is required (``DOCS_BROWSER_REQUIRED=1``)."""
    if os.environ.get("DOCS_BROWSER_REQUIRED") == "1":
        pytest.fail(reason + " (DOCS_BROWSER_REQUIRED=1)")
    pytest.skip(reason)


# ----------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def docs_html(tmp_path_factory) -> Path:
    """The HTML docs, built warning-free (``sphinx-build -W``)."""
    for module in ("sphinx", "myst_parser", "furo", "sphinx-mathjax-offline"):
        if importlib.util.find_spec(module) is None:
            _skip(f"the docs extra is not installed ({module}): pip install -e '.[docs]'")
    out = os.environ.get("DOCS_BROWSER_OUT")
    out = Path(out).resolve() if out else tmp_path_factory.mktemp("docs") / "html"
    doctrees = out.parent / (out.name + ".doctrees")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html"]
        + ["-d", str(doctrees), str(DOCS), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, "sphinx-build -W failed:\n" + (proc.stdout + proc.stderr)[-5000:]
    return out


class _PageParser(html.parser.HTMLParser):
    """Collects the ids (link targets) and the local URLs of one HTML page."""

    URL_ATTRS = {("a", "href"), ("link", "href"), ("img", "src"), ("script", "src")}

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif (tag, name) in self.URL_ATTRS:
                self.urls.append(value)


def _parse(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def broken_local_links(site: Path) -> list[str]:
    """Every local ``href``/``src`` of every page of ``site`` whose file, or whose
    ``#anchor`` in that file, does not exist: ``"page -> url (why)"``."""
    pages = {p: _parse(p) for p in sorted(site.rglob("*.html"))}
    broken = []
    for page, parsed in pages.items():
        for url in parsed.urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("mailto:", "data:", "javascript:")):
                continue  # not a link within the docs
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(site)} -> {url}"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no such anchor)")
    return broken


def test_no_broken_internal_link(docs_html):
    assert (docs_html / "index.html").is_file()
    broken = broken_local_links(docs_html)
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "a.html").write_text('<p id="x"><a href="b.html#y">b</a><a href="#x">x</a>')
    (tmp_path / "b.html").write_text('<p id="z"><img src="_images/none.png"><a href="c.html">')
    assert broken_local_links(tmp_path) == [
        "a.html -> b.html#y (no such anchor)",
        "b.html -> _images/none.png (no such file)",
        "b.html -> c.html (no such file)",
    ]


def test_api_index_lists_every_public_name(docs_html):
    """docs/api.md lists every name of ``__all__``, each (but ``__version__`` and
    ``UNLINKED``) linked to the page that documents it."""
    text = (docs_html / "api.html").read_text(encoding="utf-8")
    parser = _ApiRows()
    parser.feed(text)
    rows = parser.rows  # name -> linked?
    unlinked = set()
    for module in (torch_artic, torch_artic.testing):
        for name in module.__all__:
            assert name in rows, f"{module.__name__}.{name} is missing from the API index"
            if not rows[name] and name != "__version__":
                unlinked.add(f"{module.__name__}.{name}")
    assert unlinked == UNLINKED, (
        "names on the API index without a link to their documentation changed: "
        f"now {sorted(unlinked)}, expected {sorted(UNLINKED)} (update UNLINKED)"
    )


class _ApiRows(html.parser.HTMLParser):
    """``{name: has a link}`` from the first cell of every row of the API index tables."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, bool] = {}
        self._cell = 0
        self._in_first = False
        self._text: list[str] = []
        self._link = False

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._cell = 0
        elif tag == "td":
            self._cell += 1
            self._in_first = self._cell == 1
            self._text, self._link = [], False
        elif tag == "a" and self._in_first and dict(attrs).get("href"):
            self._link = True

    def handle_endtag(self, tag):
        if tag == "td" and self._in_first:
            self._in_first = False
            name = "".join(self._text).strip().removesuffix("()")
            self.rows[name] = self._link

    def handle_data(self, data):
        if self._in_first:
            self._text.append(data)


# ----------------------------------------------------------------------------- the browser
def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (``--remote-debugging-pipe``: JSON messages separated by NUL bytes on fds 3 and 4)."""

    def __init__(self, executable: str, log: Path):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")  # a fresh, empty profile
        self.log = log
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        cmd = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"]

        def pipe_fds():  # in the child: Chromium reads fd 3 and writes fd 4
            read = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # out of the way of 3 and 4
            write = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read, 3)  # dup2 makes them inheritable; every other fd is close-on-exec
            os.dup2(write, 4)

        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=False,  # would close 3 and 4 after preexec_fn
                preexec_fn=pipe_fds,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Chromium closed its DevTools pipe; its log ends:\n{tail}")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params=None, session=None, timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_for(self, method: str, session: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self.events.append(self._receive(deadline))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)


# Waits for MathJax (when the page loads it), the images and the fonts, scrolls to the
# URL's anchor again (typesetting moves it), then reports what a reader would notice.
INSPECT_JS = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await Promise.all([...document.images].map((img) => img.complete ? null :
    new Promise((done) => {
      img.addEventListener("load", done);
      img.addEventListener("error", done);
    })));
  await document.fonts.ready;
  const id = decodeURIComponent(location.hash.slice(1));
  const anchor = id ? document.getElementById(id) : null;
  if (anchor) anchor.scrollIntoView({behavior: "instant", block: "start"});
  const skip = new Set(["SCRIPT", "STYLE", "PRE", "CODE", "TEXTAREA", "NOSCRIPT", "MJX-CONTAINER"]);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode(node) {
    for (let e = node.parentElement; e; e = e.parentElement) {
      if (skip.has(e.tagName)) return NodeFilter.FILTER_REJECT;
    }
    return NodeFilter.FILTER_ACCEPT;
  }});
  const raw = [];
  for (let node; (node = walker.nextNode());) {
    if (/\\\(|\\\[|\$\$/.test(node.nodeValue)) raw.push(node.nodeValue.trim().slice(0, 160));
  }
  return {
    mathjax: (window.MathJax && MathJax.version) || null,
    math: document.querySelectorAll(".math").length,
    typeset: document.querySelectorAll(".math mjx-container").length,
    math_errors: [...document.querySelectorAll("mjx-merror, [data-mml-node=merror]")].map(
      (e) => (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 160)),
    // a formula whose box does not hold its ink shows a vertical scrollbar in furo
    math_scrollbars: [...document.querySelectorAll(".math-wrapper")].filter(
      (e) => e.scrollHeight > e.clientHeight).map((e) => e.textContent.trim().slice(0, 80)),
    raw_tex: raw,
    images: [...document.images].map((img) => ({src: img.currentSrc || img.src,
      loaded: img.complete && img.naturalWidth > 0})),
    anchor_found: location.hash ? anchor !== null : null,
  };
})()
"""


@pytest.fixture(scope="module")
def browser(docs_html):
    executable = _chromium()
    if executable is None:
        _skip(
            "chromium not found: the real-browser check of the built docs is skipped "
            "(Debian: apt-get install -y chromium; or set CHROMIUM=/path/to/chrome)"
        )
    shots = docs_html / "_screenshots"
    shots.mkdir(exist_ok=True)
    chromium = Chromium(executable, shots / "chromium.log")
    try:
        yield chromium
    finally:
        chromium.close()


def visit(browser: Chromium, site: Path, name: str) -> dict:
    """Open ``PAGES[name]`` in a fresh tab, let it settle, screenshot it to
    ``_screenshots/<name>.png`` and return the page's report (plus the tab's requests,
    failed loads and exceptions)."""
    path, _, fragment = PAGES[name].partition("#")
    url = (site / path).as_uri() + (f"#{fragment}" if fragment else "")
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    try:
        for domain in ("Page", "Network", "Runtime"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired", session)
        result = browser.send(
            "Runtime.evaluate",
            {"expression": INSPECT_JS, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{name}: {result['exceptionDetails']}")
        report = result["result"]["value"]
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        (site / "_screenshots" / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
        events = [e for e in browser.events if e.get("sessionId") == session]
        report["requests"] = [
            e["params"]["request"]["url"]
            for e in events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        report["failed"] = [
            f"{e['params'].get('type')}: {e['params'].get('errorText')}"
            for e in events
            if e.get("method") == "Network.loadingFailed"
        ]
        report["exceptions"] = [
            e["params"]["exceptionDetails"].get("exception", {}).get("description")
            or e["params"]["exceptionDetails"].get("text")
            for e in events
            if e.get("method") == "Runtime.exceptionThrown"
        ]
        return report
    finally:
        browser.send("Target.closeTarget", {"targetId": target})
        browser.events = [e for e in browser.events if e.get("sessionId") != session]


@pytest.mark.parametrize("name", list(PAGES))
def test_page_as_a_reader_sees_it(browser, docs_html, name):
    report = visit(browser, docs_html, name)
    assert (docs_html / "_screenshots" / f"{name}.png").stat().st_size > 10_000
    assert not report["raw_tex"], f"{name}: raw TeX left in the rendered text: {report['raw_tex']}"
    assert not report["math_errors"], f"{name}: formulas MathJax could not parse: {report}"
    assert not report["math_scrollbars"], f"{name}: formulas with a stray vertical scrollbar"
    assert report["typeset"] == report["math"], (
        f"{name}: {report['typeset']} of {report['math']} formulas typeset"
    )
    if name in MATH_PAGES:
        assert report["mathjax"], f"{name}: MathJax did not load"
        assert report["typeset"] > 0, f"{name}: no typeset maths"
    broken = [img["src"] for img in report["images"] if not img["loaded"]]
    assert not broken, f"{name}: images that did not load: {broken}"
    remote = [u for u in report["requests"] if urlsplit(u).scheme not in ("file", "data")]
    assert not remote, f"{name}: the page asks the network for {remote}"
    assert not report["failed"], f"{name}: resources that failed to load: {report['failed']}"
    assert not report["exceptions"], f"{name}: JavaScript errors: {report['exceptions']}"
    assert report["anchor_found"] in (None, True), f"{name}: the URL's anchor is not on the page"
