"""Every started local cluster (`make local-up`), one host per cluster: pyinfra inventories/local.py deploy.py

Uses the offline Knative bundle at ../shared/knative/v1.17.0 when it exists.
"""

from pathlib import Path

from localcluster import fleet

_BUNDLE = Path(__file__).resolve().parent.parent.parent / "shared" / "knative" / "v1.17.0"

local = [
    (f"@kube/{c.name}", {
        "kubeconfig": str(c.kubeconfig),
        **({"knative_bundle_dir": str(_BUNDLE)} if _BUNDLE.is_dir() else {}),
        # No URL: the smoke tests reach kourier-internal by port-forward through the API server.
    })
    for c in fleet.existing()
    if c.was_started()  # up, or meant to be up (a stopped component is then reported by the run)
]
