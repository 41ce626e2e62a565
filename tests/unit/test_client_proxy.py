"""The client does not scan the environment for proxies before every request (fleet scale), and keeps the proxy
the environment named when it connected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes.client import configuration as kconfiguration

from knfleet.kube.client import Cluster, Target


def _token_kubeconfig(path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t0k3n"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def test_the_token_refresh_hook_does_not_scan_the_environment_again(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    cluster = Cluster(Target("c", str(_token_kubeconfig(tmp_path / "kc"))))
    cluster.connect()
    cfg = cluster._api.configuration
    assert cfg.proxy == "http://proxy.example:3128"
    scans: list[int] = []
    real = kconfiguration.getproxies
    monkeypatch.setattr(kconfiguration, "getproxies", lambda: scans.append(1) or real())
    assert cfg.refresh_api_key_hook is not None  # a token user: the loader refreshes before every request
    for _ in range(3):
        cfg.refresh_api_key_hook(cfg)
    assert scans == []
    assert cfg.proxy == "http://proxy.example:3128"
    assert cfg.api_key["BearerToken"].endswith("t0k3n")
    cluster.close()
