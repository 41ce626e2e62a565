"""knfleet's main job on every cluster of an inventory:

    pyinfra inventories/local.py deploy.py -y                        # install / converge + model services
    pyinfra inventories/local.py deploy.py --dry                     # show what would change (each object)
    pyinfra inventories/local.py deploy.py -y --data action=uninstall

The flow, for each cluster (one pyinfra host):
  desired  settings + verified bundle + models, checked and linted (bad input: exit 2, nothing changed)
  plan     preflight -> lock -> apply stages with gates (crds, config, core, kourier, proxy) -> model services
           -> prune -> ready -> smoke            (uninstall: guard -> delete services -> delete stages -> verify)
  run      each step one pyinfra operation, grouped by task (tasks/)
  report   closing lines and the JSON report after the run; the lock is released in pyinfra's `finally`
"""

from pyinfra import host

from knfleet.run import deploy
from tasks import TASKS

desired, steps = deploy.prepare(host)
for task, group in deploy.by_task(steps):
    TASKS[task](group)
