#!/usr/bin/python3
"""config_reference.py — keeps README.md's configuration reference true to
the option tables: the text between
    <!-- config-reference: ROLE -->  and  <!-- /config-reference -->
is what `dxhub ROLE --config-reference` prints.

    docs/config_reference.py build/dxhub README.md          # rewrite
    docs/config_reference.py --check build/dxhub README.md  # exit 1 if stale
"""
import re
import os
import subprocess
import sys

BLOCK = re.compile(r"(<!-- config-reference: (\w+) -->\n)(.*?)(<!-- /config-reference -->)", re.S)


def main(argv):
    check = "--check" in argv
    binary, readme = [a for a in argv if a != "--check"]
    text = open(readme, encoding="utf-8").read()

    def table(m):
        # The embedded defaults, not a test run's (DXHUB_RUNWAY sets one).
        env = {k: v for k, v in os.environ.items() if k != "DXHUB_RUNWAY"}
        out = subprocess.run([binary, m.group(2), "--config-reference"], stdout=subprocess.PIPE, check=True, env=env)
        return m.group(1) + out.stdout.decode() + m.group(4)

    new, n = BLOCK.subn(table, text)
    if n == 0:
        sys.exit(f"{readme}: no config-reference block")
    if check:
        if new != text:
            sys.exit(f"{readme}: the configuration reference is stale (make config-reference)")
        return
    with open(readme, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    main(sys.argv[1:])
