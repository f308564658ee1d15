"""The inventory's nodes in each host's /etc/hosts: one block between two marker lines that kbootstrap owns.

Node names then resolve the same on every host without DNS (kubespray does the same). Every line outside
the block is the operator's and is kept as it is. The file is rewritten whole through a temporary file
and a rename in /etc, so a reader never sees it half-written.
"""

from __future__ import annotations

from shlex import quote

from kbootstrap.engine.steps import ShellStep
from kbootstrap.model.spec import ClusterSpec

PATH = "/etc/hosts"
BEGIN = "# BEGIN kbootstrap: the cluster's nodes (managed; edits inside this block are replaced)"
END = "# END kbootstrap"
# Everything but the block. A BEGIN without its END loses only the BEGIN line, never the lines after it.
_OUTSIDE = ("awk '/^# BEGIN kbootstrap/ {b=1; kept=\"\"; next} b && /^# END kbootstrap/ {b=0; next} "
            "b {kept = kept $0 \"\\n\"; next} {print} END {if (b) printf \"%s\", kept}' " + PATH)
_BLOCK = f"sed -n '/^# BEGIN kbootstrap/,/^# END kbootstrap/p' {PATH}"


def hosts_block(spec: ClusterSpec) -> str:
    width = max(len(str(n.address)) for n in spec.nodes)
    return "\n".join([BEGIN, *(f"{str(n.address):<{width}}  {n.name}" for n in spec.nodes), END])


def _rewrite(extra: str) -> str:
    return (f'tmp=/etc/.hosts.kbootstrap.$$ && {{ {_OUTSIDE}; {extra} }} >"$tmp" && chmod 644 "$tmp" '
            f'&& mv -f "$tmp" {PATH} || {{ rc=$?; rm -f "$tmp"; exit $rc; }}')


def hosts_step(spec: ClusterSpec) -> ShellStep:
    block = hosts_block(spec)
    return ShellStep("hosts file", probe=f'test "$({_BLOCK})" = {quote(block)}',
                     command=_rewrite(f"printf '%s\\n' {quote(block)};"),
                     label=f"{PATH}: {len(spec.nodes)} node names", detail="kbootstrap block")


def remove_hosts_step() -> ShellStep:
    return ShellStep("hosts file", probe=f"! grep -q '^# BEGIN kbootstrap' {PATH}", command=_rewrite(":;"),
                     label=f"{PATH}: the kbootstrap block")
