"""The replay's own CA (localcluster.pki) and one server certificate for 127.0.0.1, shared by every endpoint."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml

from localcluster import pki


@dataclass(frozen=True)
class Ca:
    folder: Path

    @property
    def cert_pem(self) -> bytes:
        return (self.folder / "ca.crt").read_bytes()

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.folder / "server.crt"), str(self.folder / "server.key"))
        return ctx


def ensure(folder: Path) -> Ca:
    """The CA and server certificate under folder/pki (made once)."""
    pki_dir = folder / "pki"
    if not (pki_dir / "server.crt").exists():
        pki_dir.mkdir(parents=True, exist_ok=True)
        ca = pki.make_ca(pki_dir, "replay")
        pki.issue(ca, pki_dir, "server", "knfleet-replay", server_names=("localhost",), server_ips=("127.0.0.1",))
    return Ca(pki_dir)


def write_kubeconfig(path: Path, name: str, server: str, ca_pem: bytes, token: str) -> None:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server,
                                                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
