#!/usr/bin/env python3
"""Changelog rendering on hostile input: the renderer used at publish against the one read-time listing used.

A (baseline): Python-Markdown + nh3, which the server ran on every read of a release
(skipped when the ``markdown`` package is not installed). B: the publish-time renderer
(``release_server.releases.changelog.render``: cmark-gfm + nesting bound + nh3). Each
input is rendered at two sizes, so a superlinear renderer shows as a ratio far above 2.
Rounds alternate A B B A; the median and min-max of the wall time and the process CPU
time per render are printed. Inputs a renderer refuses (too deep) count as done.

    .venv/bin/python scripts/bench/changelog_render.py [--size-kb 3] [--rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import time


def baseline():
    try:
        import markdown
        import nh3

        from release_server.releases.changelog import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
    except ImportError:
        return None

    def render(text: str) -> str:
        html = markdown.markdown(text, extensions=["tables", "fenced_code", "sane_lists"])
        return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES)

    return render


def current():
    from release_server.releases.changelog import ChangelogTooDeepError, ChangelogTooLargeError, render

    def run(text: str) -> str:
        try:
            return render(text)
        except (ChangelogTooDeepError, ChangelogTooLargeError):
            return ""

    return run


INPUTS = {
    "open brackets": lambda n: "[" * n,
    "image openers": lambda n: "![" * (n // 2),
    "emphasis runs": lambda n: "*a _b " * (n // 6),
    "nested quotes": lambda n: ">" * n,
}


def measure(fn, text: str) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn(text)
    return time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-kb", type=int, default=3, help="the baseline is quadratic: keep it small")
    ap.add_argument("--rounds", type=int, default=2, help="each round is A B B A")
    args = ap.parse_args()
    a, b = baseline(), current()
    sizes = (args.size_kb * 1000, args.size_kb * 2000)
    for name, make in INPUTS.items():
        for size in sizes:
            text = make(size)
            times: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
            for _ in range(args.rounds):
                for label in "ABBA":
                    fn = a if label == "A" else b
                    if fn is not None:
                        times[label].append(measure(fn, text))
            for label, title in (("A", "read-time Python-Markdown"), ("B", "publish-time cmark-gfm")):
                if not times[label]:
                    print(f"{name:>14} {len(text):>7} chars  {title}: not installed")
                    continue
                wall = [t[0] for t in times[label]]
                cpu = [t[1] for t in times[label]]
                print(f"{name:>14} {len(text):>7} chars  {title:<26} wall median {statistics.median(wall):8.4f}s "
                      f"(min {min(wall):.4f}, max {max(wall):.4f})  cpu/render {statistics.median(cpu):8.4f}s")


if __name__ == "__main__":
    main()
