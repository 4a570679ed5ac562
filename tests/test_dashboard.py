"""``GET /`` and ``GET /quarantine.json``: the real service over HTTP on loopback, a real SQLite store,
the real template; and the pytest plugin's URL mode against it."""

from __future__ import annotations

import asyncio
import base64
import re
from html.parser import HTMLParser

import pytest
from pytest_flakebot import loads, read_source

from bot.config import ConfigError, Settings
from bot.dashboard import authorized
from bot.store import open_store
from bot.web import create_app
from tests.history_data import pattern, record

REPO = "github:octo-org/shop"
OTHER = "gitlab:group/shop"
FLAKY = "tests/test_pay.py::test_checkout"
STEADY = "tests/test_cart.py::test_add"
HOSTILE = 'tests/test_x.py::test_"><script>alert(1)</script><img src=x onerror=alert(2)>'
TOKEN = "read-token-" + "r" * 24


def settings(tmp_path, **extra) -> Settings:
    return Settings(
        github_webhook_secret="webhook-secret-" + "x" * 20,
        github_token="ghp_" + "T" * 36,
        github_api_url="http://127.0.0.1:9",  # never called: no webhook is sent
        data_dir=tmp_path / "data",
        model_dir=tmp_path / "model",
        **extra,
    )


@pytest.fixture
def seeded(tmp_path):
    store = open_store(tmp_path / "data")
    record(store, REPO, FLAKY, "tests (ubuntu)", pattern("50% alternating"))
    record(store, REPO, STEADY, "tests (ubuntu)", pattern("stable passing"), first_id=1000)
    record(store, OTHER, HOSTILE, "rspec <b>", pattern("retry-passing"), first_id=2000)
    store.set_quarantine(
        REPO, FLAKY, number=12, url="https://github.com/octo-org/shop/issues/12", state="open"
    )
    store.set_quarantine(OTHER, HOSTILE, number=3, url="javascript:alert(3)", state="open")
    store.close()
    return tmp_path


@pytest.fixture
async def client(aiohttp_client, seeded):
    return await aiohttp_client(create_app(settings(seeded)))


class Page(HTMLParser):
    """What a reader (or a screen reader) gets from the page: text, links, tags; scripts are counted."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self.labels: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href") or "")
        if tag == "svg":
            self.labels.append(attrs.get("aria-label") or "")
        if tag == "td":
            self._cell = []
        if tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


async def test_the_page_lists_tests_by_score_with_sparklines_and_issue_links(client):
    response = await client.get("/", params={"repo": REPO})
    assert response.status == 200 and response.content_type == "text/html"
    assert response.headers["Content-Encoding"] in ("gzip", "deflate")  # browsers accept it too
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none': no script
    text = await response.text()
    page = Page(text)
    assert "script" not in page.tags and "img" not in page.tags and "link" not in page.tags  # no assets
    assert page.cells[:8] == [
        FLAKY,
        "tests (ubuntu)",
        "0.75",
        "0.93",
        "quarantine flakiness score 0.75 with confidence 0.93",
        "25 / 50",
        "15 of the last 30 runs failed",
        "#12",
    ]
    assert page.cells[8] == STEADY and page.cells[12].startswith("stable")
    assert "https://github.com/octo-org/shop/issues/12" in page.links
    assert page.labels == ["15 of the last 30 runs failed", "0 of the last 30 runs failed"]
    first_svg = text[text.index("<svg") : text.index("</svg>")]
    failed = re.search(r'<path class="f" d="([^"]+)"', first_svg)[1]
    passed = re.search(r'<path class="p" d="([^"]+)"', first_svg)[1]
    assert failed.startswith("M5 0h4v16h-4zM15 0h4v16h-4z") and failed.count("M") == 15  # tall bars
    assert passed.startswith("M0 11h4v5h-4zM10 11h4v5h-4z") and passed.count("M") == 15  # short bars
    # the repository list links to each repository's page
    assert "?repo=github%3Aocto-org/shop" not in page.links  # the current one
    assert "?repo=gitlab%3Agroup/shop" in page.links and "./" in page.links
    followed = await client.get("/?repo=gitlab%3Agroup/shop")
    assert followed.status == 200 and "rspec &lt;b&gt;" in await followed.text()


async def test_hostile_test_names_are_escaped_and_bad_links_dropped(client):
    text = await (await client.get("/")).text()
    page = Page(text)
    assert "script" not in page.tags and "img" not in page.tags
    assert "<script>" not in text and "onerror=alert(2)>" not in text
    assert HOSTILE in page.cells  # shown as text, exactly
    assert "rspec <b>" in page.cells and "<b>" not in text.replace("&lt;b&gt;", "")
    assert not any(link.startswith("javascript:") for link in page.links) and "javascript:" not in text
    assert "#3" in page.cells  # the issue number still shows, without the link


async def test_long_test_names_wrap_between_their_parts_not_inside_identifiers(client):
    text = await (await client.get("/", params={"repo": REPO})).text()
    css = re.search(r"td\.test \{([^}]*)\}", text)[1]
    assert "break-all" not in css and "overflow-wrap: anywhere" in css  # inside a word only as a last resort
    cell = re.search(r'<td class="test">(.*?)</td>', text)[1]
    assert cell == "tests/<wbr>test_pay.<wbr>py::<wbr>test_checkout"  # FLAKY, with its break points
    assert Page(f"<table><tr><td>{cell}</td></tr></table>").cells == [FLAKY]


async def test_filters_limits_and_unknown_repositories(client):
    page = Page(await (await client.get("/", params={"recommendation": "stable"})).text())
    assert [c for c in page.cells if c.startswith("tests/")] == [STEADY]
    limited = await (await client.get("/", params={"limit": "1"})).text()
    assert len(re.findall(r"<svg ", limited)) == 1 and "Showing the 1 most flaky" in limited
    assert "?limit=5" in limited
    by_name = await client.get("/", params={"repo": "group/shop"})  # owner/name is enough when unique
    assert by_name.status == 200 and "rspec &lt;b&gt;" in await by_name.text()
    unknown = await client.get("/", params={"repo": "github:octo-org/nope"})
    assert unknown.status == 404
    assert "no test history for github:octo-org/nope; known repositories: " in await unknown.text()
    assert (await client.get("/", params={"recommendation": "<x>"})).status == 400
    assert (await client.get("/", params={"limit": "lots"})).status == 400


async def test_an_empty_database_says_so(aiohttp_client, tmp_path):
    client = await aiohttp_client(create_app(settings(tmp_path)))
    response = await client.get("/")
    assert response.status == 200
    assert "No test history yet" in await response.text()
    document = await (await client.get("/quarantine.json")).json()
    assert document["version"] == 1 and document["tests"] == []


async def test_quarantine_json_is_the_plugins_list(client):
    response = await client.get("/quarantine.json", params={"repo": REPO})
    assert response.status == 200 and response.content_type == "application/json"
    entries, problems = loads(await response.read())
    assert problems == [] and [(e.test, e.repo, e.issue_url) for e in entries] == [
        (FLAKY, "octo-org/shop", "https://github.com/octo-org/shop/issues/12")
    ]
    everything, _ = loads(await (await client.get("/quarantine.json")).read())
    assert {e.test for e in everything} == {FLAKY, HOSTILE}
    assert next(e for e in everything if e.test == HOSTILE).issue_url is None  # not an http(s) link
    missing = await client.get("/quarantine.json", params={"repo": "github:octo-org/nope"})
    assert missing.status == 404 and "known repositories" in (await missing.json())["error"]


async def test_the_plugin_reads_the_list_from_the_service(client):
    url = str(client.make_url("/quarantine.json").with_query(repo=REPO))
    entries, _ = loads(await asyncio.to_thread(read_source, url))
    assert [e.test for e in entries] == [FLAKY]


async def test_a_read_token_guards_both_views(aiohttp_client, seeded, monkeypatch):
    client = await aiohttp_client(create_app(settings(seeded, read_token=TOKEN)))
    url = str(client.make_url("/quarantine.json").with_query(repo=REPO))
    for path in ("/", "/quarantine.json"):
        refused = await client.get(path)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
        assert FLAKY not in await refused.text()
        wrong = await client.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        assert wrong.status == 401
        assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    page = await client.get("/", headers={"Authorization": f"Basic {basic}"})  # what a browser sends
    assert page.status == 200 and FLAKY in Page(await page.text()).cells
    assert (await client.get("/", params={"token": TOKEN})).status == 401  # never in the URL (access logs)

    # the pytest plugin sends FLAKEBOT_READ_TOKEN; without it the list is NOT APPLIED, with the reason
    with pytest.raises(OSError, match="HTTP 401"):
        await asyncio.to_thread(read_source, url)
    monkeypatch.setenv("FLAKEBOT_READ_TOKEN", TOKEN)
    entries, _ = loads(await asyncio.to_thread(read_source, url))
    assert [e.test for e in entries] == [FLAKY]


def test_the_token_check():
    assert authorized(None, None) and authorized("Bearer whatever", "")
    assert authorized(f"Bearer {TOKEN}", TOKEN) and authorized(f"bearer  {TOKEN} ", TOKEN)
    assert not authorized(None, TOKEN) and not authorized(TOKEN, TOKEN) and not authorized("Bearer ", TOKEN)
    assert not authorized("Basic !!!not-base64", TOKEN) and not authorized("Basic " + "w" * 8, TOKEN)
    assert not authorized(f"Token {TOKEN}", TOKEN) and not authorized("Bearer tökén", TOKEN)
    with pytest.raises(ConfigError, match="FLAKEBOT_READ_TOKEN is too short"):
        settings(__import__("pathlib").Path("."), read_token="short").check_for_serving()
    assert Settings.from_env({"FLAKEBOT_READ_TOKEN": f" {TOKEN} "}).read_token == TOKEN
    assert TOKEN not in repr(Settings(read_token=TOKEN))
