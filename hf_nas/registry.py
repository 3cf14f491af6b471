"""Name -> class registries of the extension points (samplers, strategies): register with a class decorator,
build by name with the class's keyword options checked."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["Registry"]


class Registry(dict):
    """A dict of `name -> subclass of base`; `kind` names the extension point in error messages and `fixed` lists the
    constructor arguments every class takes (they are not options)."""

    def __init__(self, kind: str, base: type, fixed: tuple[str, ...]):
        super().__init__()
        self.kind, self.base, self.fixed = kind, base, fixed

    def register(self, cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"`register_{self.kind}` decorates {self.base.__name__} subclasses, got {cls!r}.")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} must set the class attribute `name` to a non-empty str, got {name!r}.")
        if name in self and self[name] is not cls:
            raise ValueError(f"A {self.kind} named {name!r} is already registered ({self[name].__name__}).")
        self[name] = cls
        return cls

    def options(self, cls: type) -> tuple[list[str], bool]:
        """The keyword options of `cls` (beyond the fixed arguments) and whether it takes `**kwargs`."""
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop `self`
        named = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        var_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters)
        return [n for n in named if n not in self.fixed], var_keyword

    def lookup(self, name: Any, kwargs: dict[str, Any]) -> type:
        """The class registered as `name`, after checking that it takes the options `kwargs`."""
        if not isinstance(name, str):
            raise TypeError(f"`name` must be a str, got {name!r} of type {type(name).__name__}.")
        if name not in self:
            raise ValueError(f"Unknown {self.kind} {name!r}; allowed: {sorted(self)}.")
        cls = self[name]
        allowed, var_keyword = self.options(cls)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown and not var_keyword:
            raise TypeError(
                f"{self.kind.capitalize()} {name!r} got unknown option(s) {unknown}; allowed options: {allowed}."
            )
        return cls
