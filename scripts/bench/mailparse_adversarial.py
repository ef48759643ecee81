"""How long the mail parser takes for hostile 1 MB messages, against an ordinary 1 MB message.

The baseline (an ordinary message: a few headers and 1 MB of plain text) is measured in
the same run, in alternating rounds (A B B A ...), and each shape is printed with the
median CPU time per MB and its min-max, and its ratio to the baseline. CPU time of this
process, so other work on the machine does not count.

    .venv/bin/python scripts/bench/mailparse_adversarial.py [--rounds 4] [--size-mb 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

from release_server.support.mailparse import parse_message


def head(extra: bytes, body: bytes = b"hello\r\n") -> bytes:
    return (b"From: Alice <alice@example.com>\r\nTo: support@example.org\r\nSubject: help\r\n"
            b"Message-ID: <root@example.com>\r\n" + extra + b"\r\n" + body)


SHAPES = {
    "baseline: 1 MB of plain text": lambda n: head(b"", b"An ordinary line of text in a mail.\r\n" * (n // 37)),
    "References with 100k ids": lambda n: head(
        b"References: " + b"\r\n ".join(b"<%d@example.com>" % i for i in range(n // 20)) + b"\r\n"),
    "Cc with 20k+ recipients": lambda n: head(
        b"Cc: " + b",\r\n ".join(b"user%d@example.com" % i for i in range(n // 21)) + b"\r\n"),
    "one To field per recipient": lambda n: head(b"".join(b"To: u%d@example.com\r\n" % i for i in range(n // 20))),
    "thousands of parameters": lambda n: head(b"Content-Type: text/plain; " + b"; ".join(
        b"p%d=v" % i for i in range(n // 7)) + b"\r\n"),
    "unterminated encoded words": lambda n: head(b"Subject: " + b"=?c?q?x" * (n // 7) + b"\r\n"),
    "25k MIME parts": lambda n: b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * (n // 40) + b"--b--\r\n",
    "deeply nested multiparts": lambda n: b"From: a@example.com\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(n // 50)),
    "nested HTML": lambda n: head(b"Content-Type: text/html\r\n", b"<div>" * (n // 5)),
}


def cpu(raw: bytes) -> float:
    start = time.process_time()
    parse_message(raw)
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--size-mb", type=float, default=1.0)
    args = ap.parse_args()
    size = int(args.size_mb * (1 << 20))
    messages = {name: make(size) for name, make in SHAPES.items()}
    baseline_name = next(iter(SHAPES))
    times: dict[str, list[float]] = {name: [] for name in SHAPES}
    for r in range(args.rounds):
        order = list(SHAPES) if r % 2 == 0 else list(reversed(SHAPES))  # A B ... B A
        for name in order:
            times[name].append(cpu(messages[name]) / (len(messages[name]) / (1 << 20)))
    base = statistics.median(times[baseline_name])
    print(f"{'shape':32s} {'CPU s/MB median':>16s} {'min-max':>15s} {'x baseline':>10s}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:32s} {med:16.3f} {min(values):7.3f}-{max(values):<7.3f} {med / base:10.1f}")


if __name__ == "__main__":
    main()
