"""The clusters of a pyinfra inventory, with their data, grouped into rollout waves."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from knfleet.errors import InputError, shown


@dataclass(frozen=True)
class Cluster:
    host: str  # the inventory host name, e.g. @kube/local-1
    name: str
    wave: int
    groups: tuple[str, ...]
    data: dict[str, Any]


class InventoryError(InputError):
    """The inventory cannot be read or names bad waves; nothing was changed on any cluster."""


def parse_data(items: list[str]) -> dict[str, Any]:
    """`--data key=value` arguments as pyinfra reads them (true/false, numbers and JSON become values)."""
    from pyinfra_cli.util import parse_cli_arg

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InventoryError(f"--data {item!r} is not allowed; use KEY=VALUE")
        out[key] = parse_cli_arg(value)
    return out


def group_data_directories() -> list[str] | None:
    return ["group_data"] if os.path.isdir("group_data") else None


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
    if os.getcwd() not in sys.path:  # as pyinfra's CLI: an inventory may import modules beside it
        sys.path.append(os.getcwd())
    try:
        with ctx_state.use(State()):
            inv = make_inventory(inventory, override_data=override_data or {}, cwd=os.getcwd(),
                                 group_data_directories=group_data_directories())
    except Exception as err:  # noqa: BLE001 - pyinfra raises many kinds
        cause = err.args[0] if err.args and isinstance(err.args[0], BaseException) else err
        raise InventoryError(f"inventory {inventory}: {type(cause).__name__}: {cause}") from None
    out: list[Cluster] = []
    for host in inv:
        data = host.data.dict() if hasattr(host.data, "dict") else dict(host.data)
        raw = data.get("rollout_wave", 0)
        try:
            wave = int(raw)
        except (TypeError, ValueError):
            raise InventoryError(f"{host.name}: rollout_wave = {shown(raw)} is not allowed; use an integer >= 0 "
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
