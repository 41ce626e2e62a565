"""Run a command in a pod's container through the API server, as `kubectl exec` does (no TTY, no stdin).

The `kubernetes` package's websocket exec client, called with the request the client builds (auth header from
the kubeconfig, exec plugins refreshed), not through CoreV1Api, whose import alone costs a second or more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knfleet.errors import ClusterError


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None: no exit code (the command could not start, or the stream broke: see error)
    stdout: str
    stderr: str
    error: str = ""  # the status the API server sent when the command did not exit 0


def status_of(text: str) -> tuple[int | None, str]:
    """The exit code and message of exec's status channel (a metav1.Status): 0 on Success; the ExitCode cause's
    value when the command exited non-zero; None with the status message when it could not run."""
    import json

    if not text.strip():
        return None, "the exec stream ended without a status"
    try:
        status = json.loads(text)
    except ValueError:
        return None, text.strip()[:300]
    if status.get("status") == "Success":
        return 0, ""
    message = str(status.get("message") or status.get("reason") or "failed")
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), message
            except (TypeError, ValueError):
                break
    return None, message


def run(api: Any, namespace: str, pod: str, container: str, command: list[str], timeout: float) -> ExecResult:
    from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL, websocket_call

    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    query = [("command", c) for c in command] + [("container", container), ("stdout", "true"),
                                                 ("stderr", "true"), ("stdin", "false"), ("tty", "false")]
    where = f"exec in pod {namespace}/{pod} (container {container})"
    try:
        _, url, headers, _, _ = api.param_serialize("GET", path, header_params={}, auth_settings=["BearerToken"])
        ws = websocket_call(api.configuration, "GET", url, query_params=query,
                            headers={k.lower(): v for k, v in headers.items()}, _preload_content=False)
    except Exception as err:  # noqa: BLE001 - refused by the API server, or the kubelet unreachable
        raise ClusterError(f"{where} failed: {err}") from None
    try:
        ws.run_forever(timeout=timeout)
        out, err_out = ws.read_channel(STDOUT_CHANNEL), ws.read_channel(STDERR_CHANNEL)
        if ws.is_open():
            raise ClusterError(f"{where}: no end within {timeout:.0f}s")
        code, message = status_of(ws.read_channel(ERROR_CHANNEL))
        return ExecResult(code, out, err_out, message)
    finally:
        ws.close()
