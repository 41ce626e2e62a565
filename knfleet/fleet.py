"""The clusters of a pyinfra inventory, with their data, grouped into rollout waves."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cluster:
    host: str  # the inventory host name, e.g. @kube/local-1
    name: str
    wave: int
    groups: tuple[str, ...]
    data: dict[str, Any]


class InventoryError(ValueError):
    pass


def load(inventory: str, override_data: dict[str, Any] | None = None) -> list[Cluster]:
    """Hosts of an inventory file with their merged data (group_data/ beside the working directory)."""
    import warnings

    from pyinfra.api import State
    from pyinfra.context import ctx_state

    with warnings.catch_warnings():  # pyinfra_cli monkey-patches gevent late: harmless for what is used here
        warnings.simplefilter("ignore")
        from pyinfra_cli.inventory import make_inventory

    if not os.path.exists(inventory):
        raise InventoryError(f"inventory {inventory}: no such file")
    try:
        with ctx_state.use(State()):
            inv = make_inventory(inventory, override_data=override_data or {}, cwd=os.getcwd(),
                                 group_data_directories=["group_data"] if os.path.isdir("group_data") else None)
    except Exception as err:  # noqa: BLE001 - pyinfra raises many kinds
        raise InventoryError(f"inventory {inventory}: {err}") from err
    out: list[Cluster] = []
    for host in inv:
        data = host.data.dict() if hasattr(host.data, "dict") else dict(host.data)
        raw = data.get("rollout_wave", 0)
        try:
            wave = int(raw)
        except (TypeError, ValueError):
            raise InventoryError(f"{host.name}: rollout_wave = {raw!r} is not allowed; use an integer >= 0 "
                                 "(0 is the canary wave)") from None
        if wave < 0:
            raise InventoryError(f"{host.name}: rollout_wave = {wave} is not allowed; use an integer >= 0")
        groups = tuple(sorted({str(g) for g in getattr(host, "groups", ()) or ()}))
        out.append(Cluster(host.name, host.name.split("/", 1)[-1], wave, groups, data))
    if not out:
        raise InventoryError(f"inventory {inventory}: no hosts")
    return out


def waves(clusters: list[Cluster]) -> list[tuple[int, list[Cluster]]]:
    by: dict[int, list[Cluster]] = {}
    for c in clusters:
        by.setdefault(c.wave, []).append(c)
    return sorted(by.items())
