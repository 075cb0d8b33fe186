"""How soon the home feed is on screen, with an empty cache and with a warm one.

Loads the page at --url in Debian's headless Chromium, alternating a cold load (cache
cleared first) and a warm one (the fingerprinted assets kept for a year), and prints
the median, over the rounds, of: requests sent over the network, bytes received, and
the milliseconds from navigation start to the arrival of the HTML, of the last script
or style sheet, and of the feed (drawn as soon as its JSON is in). Serve a seeded
database first (`bin/run`).

Usage: .venv/bin/python bench/page_load.py [--url http://127.0.0.1:4567] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from web_support import start_chromium  # the tests' way to start Chromium

TIMINGS = r"""
const nav = performance.getEntriesByType('navigation')[0];
const res = performance.getEntriesByType('resource');
const feed = res.find(e => e.name.includes('/api/activities/home'));
const assets = res.filter(e => /\/assets\/.*\.(js|css)$/.test(e.name));
return {
  requests: 1 + res.filter(e => e.transferSize > 0).length,  // not from the cache
  bytes: nav.transferSize + res.reduce((n, e) => n + e.transferSize, 0),
  html: nav.responseEnd,
  assets: Math.max(0, ...assets.map(e => e.responseEnd)),
  feed: feed ? feed.responseEnd : NaN,
};
"""


def load(browser, url: str) -> dict:
    browser.get(url)
    browser.find_element("css selector", "ol.feed > li")  # implicit wait below
    return browser.execute_script(TIMINGS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:4567/")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    browser = start_chromium()
    browser.implicitly_wait(10)
    results: dict[str, list[dict]] = {"cold": [], "warm": []}
    try:
        load(browser, args.url)  # the server's first requests are not measured
        for _ in range(args.rounds):
            browser.execute_cdp_cmd("Network.clearBrowserCache", {})
            results["cold"].append(load(browser, args.url))
            results["warm"].append(load(browser, args.url))
    finally:
        browser.quit()
    print(f"{args.rounds} rounds, medians")
    print("cache  requests   bytes  HTML ms JS+CSS ms  feed ms")
    for kind, runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"{kind:6} {med['requests']:8.0f} {med['bytes']:7.0f} {med['html']:8.1f} "
            f"{med['assets']:9.1f} {med['feed']:8.1f}"
        )


if __name__ == "__main__":
    main()
