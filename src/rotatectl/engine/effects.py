"""Effects: the audit record, the notifications and the hooks of one credential.

Every event is audited *before* anything reports it, then sent to the
credential's notifiers. The audit record comes first because it is the one
that must not be lost: in a normal rotation a record that cannot be written
stops the rotation before its next side effect (:class:`AuditRefused`, exit 1);
an emergency goes on, and its result says loudly that the log missed it.
A notifier or hook that fails never fails a rotation: it becomes a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import NotifierError, OperationError
from ..hooks import HookResult, run_hook
from ..model import Event, Result, Rotation, Version

if TYPE_CHECKING:
    from ..audit import AuditLog
    from ..ports import Clock, Target

# The signature of rotatectl.hooks.run_hook, so a test can pass a fake in.
HookRunner = Callable[..., HookResult]


class AuditRefused(OperationError):
    """The audit record before a side effect could not be written: the action stops."""


class Effects:
    """Audit, notify and run hooks for ``target``. ``lenient``: an emergency, which an
    audit failure must not stop (the failure is reported instead)."""

    def __init__(
        self,
        target: Target,
        clock: Clock,
        audit: AuditLog | None,
        *,
        run_hooks: HookRunner = run_hook,
        lenient: bool = False,
    ) -> None:
        self.target = target
        self.clock = clock
        self.audit = audit
        self.run_hooks = run_hooks
        self.lenient = lenient

    def event(
        self,
        result: Result,
        kind: str,
        *,
        severity: str = "info",
        rotation: Rotation | None = None,
        version: Version | None = None,
        message: str = "",
        data: Mapping[str, Any] | None = None,
        notify: bool = True,
    ) -> None:
        """Audit the event, then tell the notifiers (unless ``notify`` is False).

        Raises AuditRefused when the audit log cannot be written, unless lenient.
        """
        t = self.target
        event = Event(
            kind=kind,
            credential=t.name,
            at=self.clock.now(),
            severity=severity,
            rotation_id=rotation.id if rotation else result.rotation_id,
            version_id=version.version_id if version else None,
            key_id=version.key_id if version else None,
            message=message,
            data=dict(data or {}),
        )
        self._audit(result, event, version)
        for name, notifier in t.notifiers if notify else ():
            try:
                notifier.notify(event)
            except NotifierError as exc:
                result.warnings.append(f"notifier {name} failed: {exc}")

    def _audit(self, result: Result, event: Event, version: Version | None) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(
                event.kind,
                event.credential,
                outcome="failed" if event.kind == "failed" else "ok",
                severity=event.severity,
                rotation_id=event.rotation_id,
                version=version.number if version else None,
                key_id=event.key_id,
                fingerprint=version.fingerprint if version else None,
                reason=event.message or None,
                data=event.data or None,
            )
        except OperationError as exc:
            if not self.lenient:
                raise AuditRefused(
                    f"{exc}; stopped before the next step (it resumes once the log can be written)"
                ) from exc
            result.warnings.append(f"AUDIT LOG NOT WRITTEN ({event.kind}): {exc}")
            result.attention = True

    def hook(
        self,
        result: Result,
        event: str,
        extra: Mapping[str, str],
        stdin: str | None = None,
    ) -> HookResult | None:
        """Run the credential's ``event`` hook with metadata in ``ROTATECTL_*``
        variables (the key only on stdin). None when no such hook is configured."""
        t = self.target
        if t.hooks is None or not t.hooks.command(event):
            return None
        metadata = {"credential": t.name, "store": t.store_name, "path": t.path, **extra}
        if result.rotation_id:
            metadata["rotation_id"] = result.rotation_id
        timeout: timedelta = t.hooks.timeout
        ran = self.run_hooks(
            event, t.hooks.command(event), metadata, timeout=timeout, stdin_value=stdin
        )
        (result.steps if ran.ok else result.warnings).append(ran.summary())
        return ran
