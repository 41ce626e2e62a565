"""knfleet's main job on every cluster of an inventory:

    pyinfra inventories/local.py deploy.py -y                        # install / converge
    pyinfra inventories/local.py deploy.py --dry                     # show what would change
    pyinfra inventories/local.py deploy.py -y --data action=uninstall

What a run does is chosen by data `action` (install | uninstall). Settings come from group_data/.
"""

from pyinfra import host
from pyinfra.context import ctx_state

from knfleet import plan
from knfleet.bundle import BundleError
from knfleet.settings import SettingsError
from tasks import knative, kourier, proxy, uninstall

try:
    target, settings, paths = plan.prepare(host.name, host.data)
except (SettingsError, BundleError, ValueError) as err:
    plan.fail_early(err)

plan.register_summary(ctx_state.get(), settings.action)
timeout = settings.wait_timeout

if settings.action == "install":
    from knfleet import operations

    operations.preflight(name="Preflight: API, version >= 1.30, rights", target=target)
    knative.install(target=target, paths=paths, timeout=timeout)
    kourier.install(target=target, paths=paths, timeout=timeout)
    proxy.install(target=target, paths=paths, timeout=timeout)
    operations.deployments_available(name="knative-serving Deployments Available (with Kourier)", target=target,
                                     namespace="knative-serving", timeout=timeout)
    operations.pods_ready(name="Every pod Ready (knative-serving, kourier-system, knative-nginx)", target=target,
                          namespaces=("knative-serving", "kourier-system", "knative-nginx"), timeout=timeout)
else:
    from knfleet import operations

    operations.preflight(name="Preflight: API reachable", target=target, need_rights=False)
    uninstall.uninstall(target=target, paths=paths, timeout=timeout,
                        force=str(host.data.get("force_uninstall") or "").lower() in ("1", "true", "yes"))
