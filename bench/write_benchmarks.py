#!/usr/bin/env python3
"""Puts bench/compare.sh's tables, with the run's setup, into BENCHMARKS.md between the lines
`<!-- compare.sh begin -->` and `<!-- compare.sh end -->` (added after the title and its first paragraph when missing); the
rest of the file is left as it is.

    write_benchmarks.py BENCHMARKS.md TABLES.md COMMAND WHEN VERSIONS MACHINE MECHANISM
"""
import sys

BEGIN, END = "<!-- compare.sh begin -->", "<!-- compare.sh end -->"


def section(tables, command, when, versions, machine, mechanism):
    return f"""{BEGIN}
## Starling, Prosody and ejabberd in one run

Written by `bench/compare.sh --write`; run of {when}, {versions}; machine: {machine}.

```sh
{command}
```

Every server alone on CPU 0 and the load generator (`starling-bench`) on CPU 1, the servers
taking turns, their order reversed every other repeat; loopback, STARTTLS with the same
self-signed RSA-2048 certificate, {mechanism} (4096 iterations), accounts created by in-band
registration, stream management, offline storage, a MUC service, a listen backlog of 1024,
no rate limits or shapers. Cells are the median (min-max) over the repeats. On Starling every
message is written to the recipient's inbox before the sender's ack: there `<a/>` means
committed to storage; on Prosody and ejabberd it means received. The scenarios are described
at the top of `bench/compare.sh`.

{tables.rstrip()}
{END}
"""


def main():
    path, tables_path, command, when, versions, machine, mechanism = sys.argv[1:8]
    text = open(path).read()
    new = section(open(tables_path).read(), command, when, versions, machine, mechanism)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + new + "\n" + tail
    else:
        # After the title and its first paragraph.
        title, _, body = text.partition("\n\n")
        intro, _, rest = body.partition("\n\n")
        text = f"{title}\n\n{intro}\n\n{new}\n{rest}"
    open(path, "w").write(text)


if __name__ == "__main__":
    main()
