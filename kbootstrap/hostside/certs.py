"""Every certificate a host holds, as PEM text, for `kbootstrap certs check`: run by the agent beside the
facts (`programs`), so a host answers in one round trip.

Only certificates ever leave the host: a file's PEM blocks of type CERTIFICATE (a kubelet's rotating
`*-current.pem` holds its key too; that block is skipped), and from a kubeconfig only the values of
`certificate-authority-data` and `client-certificate-data` (never `client-key-data`). The controller
parses them (the host needs nothing but Python).

Standard library only, Python 3.6+; it must not import anything from kbootstrap (it is sent as source).
"""

import base64
import os
import re

PEM = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
KUBECONFIG_CERT = re.compile(r"^\s*(certificate-authority-data|client-certificate-data):\s*([A-Za-z0-9+/=]+)\s*$",
                             re.MULTILINE)
# The kubelet keeps every certificate it rotated out beside the current one (kubelet-client-2026-…pem):
# only the `-current.pem` link says which is in use.
ROTATED = re.compile(r"^kubelet-(client|server)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.pem$")
SUFFIXES = (".crt", ".pem", ".conf")
MAX_SIZE = 1 << 20


def _from_file(path):
    with open(path, "rb") as f:
        text = f.read(MAX_SIZE).decode("utf-8", "replace")
    found = [("", m.group(0)) for m in PEM.finditer(text)]
    for field, data in KUBECONFIG_CERT.findall(text):
        try:
            decoded = base64.b64decode(data).decode("ascii", "replace")
        except ValueError:
            continue
        found += [(field, m.group(0)) for m in PEM.finditer(decoded)]
    return found


def certificates(arg):
    """arg {"roots": [dir or file, ...]} -> [{"path", "field", "pem"}]: every certificate under the roots."""
    out = []
    for root in arg["roots"]:
        if os.path.isfile(root):
            paths = [root]
        else:
            paths = []
            for d, dirs, files in os.walk(root):
                dirs.sort()
                paths += [os.path.join(d, f) for f in sorted(files)
                          if f.endswith(SUFFIXES) and not ROTATED.match(f)]
        for path in paths:
            try:
                found = _from_file(path)
            except OSError:
                continue
            out += [{"path": path, "field": field, "pem": pem} for field, pem in found]
    return out
