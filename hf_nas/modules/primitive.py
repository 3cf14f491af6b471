"""The protocol of an elastic primitive: a module whose active sizes are prefixes of its full sizes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import nn

__all__ = ["ElasticPrimitive"]


class ElasticPrimitive(ABC):
    """An elastic torch module (mixed in before its `nn.Module` base): it keeps the vanilla parameter names and full
    shapes, and computes with the first `active_<dim>` entries of each of its elastic dimensions.

    Naming: for every name `dim` in `elastic_dims`, the module has an attribute or property `active_<dim>` (the
    size it computes with now) and `max_<dim>` (its full size, which never changes), and `set_active` takes `dim`
    as a keyword argument. At full size the forward is exactly the vanilla module's.

    Example:

    ```python
    >>> from hf_nas.modules import ElasticLinear
    >>> layer = ElasticLinear(8, 4)
    >>> layer.elastic_dims
    ('in_features', 'out_features')
    >>> layer.set_active(in_features=6)
    >>> layer.active_sizes(), layer.max_sizes()
    ({'in_features': 6, 'out_features': 4}, {'in_features': 8, 'out_features': 4})
    ```
    """

    elastic_dims: ClassVar[tuple[str, ...]]

    @abstractmethod
    def set_active(self, *args: int | None, **sizes: int | None) -> None:
        """Set the active size of the dimensions given, as keywords named after `elastic_dims` (a primitive with one
        dimension also takes it positionally). A dimension not given keeps its size; so does one given as `None`
        where the primitive has several dimensions.

        Raises `ValueError` (`TypeError` for a non-int) naming the dimension, the value and the allowed range when a
        size is outside `1..max_<dim>`; a failed call changes nothing.
        """

    @abstractmethod
    def reset_active(self) -> None:
        """Make every dimension full size again."""

    @abstractmethod
    def active_num_parameters(self) -> int:
        """The number of parameters the active slice computes with (those of `to_static()`)."""

    @abstractmethod
    def to_static(self) -> nn.Module:
        """A plain torch module holding a copy (never a view) of the active slice, with the same outputs."""

    def active_sizes(self) -> dict[str, int]:
        """The active size of each elastic dimension."""
        return {dim: getattr(self, f"active_{dim}") for dim in self.elastic_dims}

    def max_sizes(self) -> dict[str, int]:
        """The full size of each elastic dimension."""
        return {dim: getattr(self, f"max_{dim}") for dim in self.elastic_dims}
