"""Reads the HTML report back: the grid's entries, the failed cells' <pre> texts, the external resources it
would load. Used on the page as written and on the DOM headless Chromium dumps after rendering it."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], tuple[str, str]] = {}
        """(cell, suite) → (data-verdict, text) of the grid's entries."""
        self.rows: list[str] = []
        """The grid's row cells, in order."""
        self.pres: list[str] = []
        self.external: list[str] = []
        """Tags that would load something: script, link, img/iframe/... with src, url( in styles."""
        self.title = ""
        self._open: tuple[str, str, str] | None = None
        self._text: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self._tag = tag
        if tag in ("script", "link", "iframe", "object", "embed") or "src" in attributes:
            self.external.append(tag)
        if tag == "tr" and attributes.get("data-cell"):
            self.rows.append(str(attributes["data-cell"]))
        if tag == "td" and "entry" in (attributes.get("class") or "").split():
            self._open = (str(attributes["data-cell"]), str(attributes["data-suite"]), str(attributes["data-verdict"]))
            self._text = []
        if tag == "pre":
            self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        if self._tag == "title":
            self.title += data
        if self._tag == "style" and "url(" in data:
            self.external.append("style url(")

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""
        if tag == "td" and self._open is not None:
            cell, suite, verdict = self._open
            self.entries[(cell, suite)] = (verdict, "".join(self._text).strip())
            self._open = None
        if tag == "pre":
            self.pres.append("".join(self._text))


def read_page(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def chromium() -> str:
    """The headless browser; skipped when missing (apt-get install chromium), failed under CI=true."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not installed (apt-get install chromium): the HTML report is not rendered in a browser"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def rendered_dom(browser: str, page: Path, tmp_path: Path) -> str:
    """The DOM after Chromium rendered ``page`` (headless, no network use: the page is a local file)."""
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0 and "<table" in done.stdout, f"chromium failed: {done.stderr[-2000:]}"
    return done.stdout


def screenshot(browser: str, page: Path, out: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1100,900", f"--screenshot={out}",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0 and out.is_file(), f"chromium screenshot failed: {done.stderr[-2000:]}"
