"""The lock's pure rules: which holders count as gone, when a lease has expired."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

from knfleet.run import lock


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (a reuse within the test is vanishingly unlikely)


def test_a_holder_on_this_machine_whose_process_is_gone_can_be_taken_over_at_once():
    here = socket.gethostname()
    assert lock.gone_here(f"ci@{here}/pid-{dead_pid()}/abcd1234")


def test_live_holders_and_other_machines_and_foreign_identities_are_not_gone():
    here = socket.gethostname()
    assert not lock.gone_here(f"ci@{here}/pid-{os.getppid()}/abcd1234")  # alive
    assert not lock.gone_here(f"ci@{here}/pid-{os.getpid()}/abcd1234")  # this very process
    assert not lock.gone_here(f"ci@other-{here}/pid-{dead_pid()}/abcd1234")  # can't tell from here
    assert not lock.gone_here("other-runner@ci")
    assert not lock.gone_here(None)


def test_new_holders_name_this_machine_and_process():
    holder = lock.new_holder()
    m = lock.HOLDER.match(holder)
    assert m and m["host"] == socket.gethostname() and int(m["pid"]) == os.getpid()


def test_expiry_is_the_last_renewal_plus_the_duration():
    body = lock.lease("me", 60)
    assert lock.expiry(body) - lock._parse(body["spec"]["renewTime"]) == timedelta(seconds=60)
    body["spec"]["renewTime"] = lock._micro(lock._now() - timedelta(seconds=61))
    assert lock.expiry(body) < lock._now()
