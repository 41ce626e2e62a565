"""Every started local cluster (`make local-up`), one host per cluster: pyinfra inventories/local.py deploy.py

Uses the offline Knative bundles at ../shared/knative/v<knative_version> when they exist (so `--data
knative_version=1.18.1` upgrades from the 1.18.1 folder).
"""

from pathlib import Path

from localcluster import fleet

_BUNDLES = Path(__file__).resolve().parent.parent.parent / "shared" / "knative"
_BUNDLE = _BUNDLES / "v1.17.0"

local = [
    (f"@kube/{c.name}", {
        "kubeconfig": str(c.kubeconfig),
        **({"knative_bundle_dir": str(_BUNDLES / "v{version}")} if _BUNDLE.is_dir() else {}),
        # No URL: the smoke tests reach kourier-internal by port-forward through the API server.
    })
    for c in fleet.existing()
    if c.was_started()  # up, or meant to be up (a stopped component is then reported by the run)
]
