"""knfleet's main job on every cluster of an inventory:

    pyinfra inventories/local.py deploy.py -y                        # install / converge + model services
    pyinfra inventories/local.py deploy.py --dry                     # show what would change
    pyinfra inventories/local.py deploy.py -y --data action=uninstall

What a run does is chosen by data `action` (install | uninstall). Settings and models come from group_data/.
Everything is checked (settings, bundle checksums, model lint) before any cluster is touched.
"""

from pyinfra import host
from pyinfra.context import ctx_state

from knfleet import operations, plan
from knfleet.bundle import BundleError
from knfleet.models import ModelError
from knfleet.settings import SettingsError
from tasks import knative, kourier, proxy, services, smoke, uninstall

try:
    target, settings, paths, models = plan.prepare(host.name, host.data)
except (SettingsError, BundleError, ModelError, plan.LintFailed, ValueError) as err:
    plan.fail_early(err)

plan.register_summary(ctx_state.get(), settings.action)
timeout = settings.wait_timeout

lock_args = {"ttl": int(host.data.get("lock_ttl") or 1800), "wait": int(host.data.get("lock_wait") or 0)}

if settings.action == "install":
    operations.preflight(name="Preflight: API, version >= 1.30, rights", target=target)
    operations.cluster_lock(name="Lock the cluster (Lease kube-system/knfleet-lock)", target=target, **lock_args)
    knative.install(target=target, paths=paths, timeout=timeout)
    kourier.install(target=target, paths=paths, timeout=timeout)
    proxy.install(target=target, paths=paths, timeout=timeout)
    operations.deployments_available(name="knative-serving Deployments Available (with Kourier)", target=target,
                                     namespace="knative-serving", timeout=timeout)
    operations.pods_ready(name="Every pod Ready (knative-serving, kourier-system, knative-nginx)", target=target,
                          namespaces=("knative-serving", "kourier-system", "knative-nginx"), timeout=timeout)
    if models:
        operations.gpu_capacity(name="GPU capacity for the model services", target=target,
                                services=tuple((m.ref, m.gpus) for m in models))
    services.deploy_services(target=target, path=paths.get("services"), models=models,
                             timeout=int(host.data.get("model_wait_timeout") or 600))
    if models and str(host.data.get("smoke") if host.data.get("smoke") is not None else "true").lower() != "false":
        smoke.smoke(target=target, models=models, domain=settings.domain,
                    internal_url=host.data.get("smoke_internal_url"), public_url=host.data.get("smoke_url"),
                    deadline=int(host.data.get("smoke_deadline") or 120))
else:
    operations.preflight(name="Preflight: API reachable", target=target, need_rights=False)
    operations.cluster_lock(name="Lock the cluster (Lease kube-system/knfleet-lock)", target=target, **lock_args)
    uninstall.uninstall(target=target, paths=paths, timeout=timeout,
                        force=str(host.data.get("force_uninstall") or "").lower() in ("1", "true", "yes"))
