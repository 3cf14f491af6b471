"""A search over several processes (`torchrun`, `accelerate launch`): who measures what, and how results meet.

[`SearchProcesses`] wraps `torch.distributed` for [`~hf_nas.search.SubnetSearch`]: each process evaluates its share
of a round's subnets ([`SearchProcesses.share`]), the values are gathered on every process
([`SearchProcesses.gather`]) so that all of them tell their strategy the same values and stay in step, and only the
main process (rank 0) writes results. Timings run in one process at a time ([`SearchProcesses.one_at_a_time`]). In
a single process (no process group) every method is the trivial one, so the search code has one path.

```python
>>> from hf_nas.search.distributed import SearchProcesses
>>> processes = SearchProcesses()  # no process group: one process
>>> processes.rank, processes.world_size, processes.share(5), processes.gather("x")
(0, 1, [0, 1, 2, 3, 4], ['x'])
```
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch.distributed as dist

__all__ = ["SearchProcesses", "init_search_processes"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def init_search_processes(backend: str = "gloo") -> SearchProcesses:
    """Join the process group that a launcher describes in the environment (`WORLD_SIZE` > 1, `RANK`,
    `MASTER_ADDR`, `MASTER_PORT`, as `torchrun` and `accelerate launch` set them), unless one is joined already, and
    return the [`SearchProcesses`]. Without such a launcher it returns the single process.

    The search exchanges only small Python objects (subnets and their values), so the default backend is `gloo`,
    which works on every device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend=backend)
        logger.info("search process %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return SearchProcesses()


class SearchProcesses:
    """The processes of one search: this one's `rank` among `world_size` (rank 0, the main process, writes).

    It reads the default `torch.distributed` process group when one is initialized, else it is the single process.
    """

    def __init__(self) -> None:
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, count: int) -> list[int]:
        """The indices of `count` items (a round's subnets) this process evaluates: every `world_size`-th one."""
        return list(range(self.rank, count, self.world_size))

    def gather(self, value: T) -> list[T]:
        """`value` of every process, in rank order, on every process."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: T) -> T:
        """The main process's `value`, on every process."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def one_at_a_time(self, function: Callable[[], T]) -> T:
        """Run `function` in every process, one process after the other (rank order), e.g. to time or to build a
        cache without two processes doing it at once."""
        result: Any = None
        for rank in range(self.world_size):
            if rank == self.rank:
                result = function()
            self.barrier()
        return result

    def on_main(self, function: Callable[[], T]) -> T:
        """`function()` run by the main process alone, its result given to every process. If it raises, the main
        process raises it and the others a `RuntimeError` naming it."""
        if not self.distributed:
            return function()
        if self.is_main:
            try:
                value = function()
            except BaseException as e:  # also SystemExit and KeyboardInterrupt: the others must not wait forever
                self.broadcast((False, f"{type(e).__name__}: {e}"))
                raise
            self.broadcast((True, value))
            return value
        ok, value = self.broadcast(None)
        if not ok:
            raise RuntimeError(f"the main search process failed: {value}")
        return value

    def collect(self, function: Callable[[], T]) -> list[T]:
        """`function()` of every process, gathered in rank order; if it raised in any process, every process
        raises a `RuntimeError` naming the rank and the error (instead of the others waiting forever)."""
        try:
            outcome: tuple[bool, Any] = (True, function())
        except Exception as e:
            if not self.distributed:
                raise
            outcome = (False, f"{type(e).__name__}: {e}")
        outcomes = self.gather(outcome)
        for rank, (ok, value) in enumerate(outcomes):
            if not ok:
                raise RuntimeError(f"search process {rank} failed: {value}")
        return [value for _, value in outcomes]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"
