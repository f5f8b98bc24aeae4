"""`forkric local --snap-start`: the snapshot phase that Lambda runs when it publishes a version.

The runtime is started with `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`: after the handler's
import it runs its before-snapshot hooks and calls `GET /runtime/restore/next`. Here that call
stands for the snapshot: it is answered after a pause (the snapshot taken, the environment
restored), and the runtime then runs its after-restore hooks, which Lambda allows 10 s
(SnapStartTimeoutException after that). An after-restore hook that fails is reported to
`POST /runtime/restore/error`: the invocations waiting get SnapStartException (400), as Lambda's
Invoke API answers. The RIE serves neither path (404): without --snap-start, neither does this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

SNAPSHOT_PAUSE_S = 0.5  # between the snapshot and the restore, so that the two show apart
AFTER_RESTORE_LIMIT_S = 10.0  # Lambda's limit on the after-restore hooks


class Snapshot:
    """Where the snapshot phase is: asked (restore/next called), restored, done (first /next)."""

    def __init__(self, enabled: bool, say: Callable[[str], None],
                 on_timeout: Callable[[], None], pause_s: float = SNAPSHOT_PAUSE_S,
                 limit_s: float = AFTER_RESTORE_LIMIT_S) -> None:
        self.enabled = enabled
        self.say = say
        self.on_timeout = on_timeout
        self.pause_s = pause_s
        self.limit_s = limit_s
        self.snapshots = 0
        self._timer: asyncio.TimerHandle | None = None

    async def restore_next(self) -> None:
        """The runtime's before-snapshot hooks ran: take the snapshot, pause, restore."""
        self.snapshots += 1
        self.say("forkric local: SnapStart: before-snapshot hooks done, snapshot taken; "
                 f"restoring in {self.pause_s:g} s")
        await asyncio.sleep(self.pause_s)
        self.say("forkric local: SnapStart: restored; the after-restore hooks have "
                 f"{self.limit_s:g} s")
        self.restoring()

    def restoring(self) -> None:
        self.done()
        self._timer = asyncio.get_running_loop().call_later(self.limit_s, self._timed_out)

    def done(self) -> None:
        """The after-restore hooks finished (a worker polls) or failed (restore/error)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self.say(f"forkric local: SnapStart: the after-restore hooks took over {self.limit_s:g} s")
        self.on_timeout()
