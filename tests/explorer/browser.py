"""A real headless Chromium (Debian's, driven by Selenium and Debian's chromedriver) for the
explorer's tests, with what they read from it: the page, the console, every network request,
screenshots; and a wallet (EIP-1193) the test answers from Python, so that even the wallet's
requests never leave the page's origin.

Selenium blocks; each call runs in a thread so that the node under test (in this process)
keeps running."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from bridge.testing import wait_until

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "explorer"

# window.ethereum: each request waits in a queue until the test answers it.
WALLET_SHIM = """
window.__wallet = { queue: [], pending: {}, next: 0 };
window.ethereum = {
  request: ({ method, params }) => new Promise((resolve, reject) => {
    const id = window.__wallet.next++;
    window.__wallet.pending[id] = { resolve, reject };
    window.__wallet.queue.push({ id, method, params: params || [] });
  }),
};
"""


class Browser:
    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver

    @classmethod
    async def start(cls, width: int = 1280, height: int = 2000) -> Browser:
        for path in (CHROMIUM, CHROMEDRIVER):
            if not Path(path).exists():
                raise AssertionError(
                    f"{path} is missing: run `make browser` (Debian's chromium, chromium-driver)"
                )
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=Service(CHROMEDRIVER))
        return cls(driver)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def close(self) -> None:
        await self.run(self.driver.quit)

    async def open(self, url: str, wallet: bool = False) -> None:
        if wallet:
            await self.run(
                self.driver.execute_cdp_cmd, "Page.addScriptToEvaluateOnNewDocument", {"source": WALLET_SHIM}
            )
        await self.run(self.driver.get, url)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, source, *args)

    async def find(self, css: str) -> WebElement:
        found: WebElement = await self.run(self.driver.find_element, By.CSS_SELECTOR, css)
        return found

    async def text(self, css: str) -> str:
        """The text of the first element ``css`` selects ("" if none)."""
        found = await self.script(
            "const e = document.querySelector(arguments[0]); return e && e.innerText", css
        )
        return str(found or "")

    async def until(self, check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> None:
        """Wait for ``check()``; on a timeout, say what the search result shows instead."""
        try:
            await wait_until(check, timeout=timeout, interval=0.2)
        except TimeoutError:
            shown = await self.text("#result")
            raise AssertionError(f"the page never showed {what}; its result reads {shown!r}") from None

    async def has(self, css: str, text: str) -> bool:
        return text in await self.text(css)

    async def count(self, css: str) -> int:
        return int(await self.script("return document.querySelectorAll(arguments[0]).length", css))

    async def search(self, query: str) -> None:
        await self.script(
            "document.getElementById('q').value = arguments[0];"
            "document.getElementById('search').requestSubmit();",
            query,
        )

    async def screenshot(self, css: str, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        element = await self.find(css)
        await self.run(element.screenshot, str(path))
        return path

    async def console(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = await self.run(self.driver.get_log, "browser")
        return entries

    async def requests(self) -> list[str]:
        """The URL of every request the page made since the last call."""
        urls = []
        for entry in await self.run(self.driver.get_log, "performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(str(message["params"]["request"]["url"]))
        return urls

    async def answer_wallet(self, handle: Callable[[str, list[Any]], Awaitable[Any]]) -> int:
        """Answer the wallet requests waiting in the page with ``handle(method, params)``."""
        waiting = await self.script("return window.__wallet ? window.__wallet.queue.splice(0) : []")
        for request in waiting:
            try:
                result = await handle(request["method"], request["params"])
            except Exception as exc:  # the page sees the wallet refuse, as with a real one
                await self.script(
                    "window.__wallet.pending[arguments[0]].reject(new Error(arguments[1]))",
                    request["id"],
                    str(exc),
                )
            else:
                await self.script(
                    "window.__wallet.pending[arguments[0]].resolve(arguments[1])", request["id"], result
                )
        return len(waiting)
