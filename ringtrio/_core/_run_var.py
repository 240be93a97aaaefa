"""RunVar: a variable whose value is local to one call of ringtrio.run()."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ._local import _current_runner

T = TypeVar("T")


class RunVar(Generic[T]):
    """A variable whose value is local to one call of :func:`ringtrio.run`."""

    __slots__ = ("_name", "_default")
    _NO_DEFAULT = object()

    def __init__(self, name: str, default: Any = _NO_DEFAULT) -> None:
        self._name = name
        self._default = default

    def get(self, default: Any = _NO_DEFAULT) -> T:
        runner = _current_runner()
        try:
            return runner._runvars[self]  # type: ignore[no-any-return]
        except KeyError:
            if default is not RunVar._NO_DEFAULT:
                return default  # type: ignore[no-any-return]
            if self._default is not RunVar._NO_DEFAULT:
                return self._default  # type: ignore[no-any-return]
            raise LookupError(self) from None

    def set(self, value: T) -> RunVarToken[T]:
        runner = _current_runner()
        old = runner._runvars.get(self, RunVarToken.MISSING)
        runner._runvars[self] = value
        return RunVarToken(self, old)

    def reset(self, token: RunVarToken[T]) -> None:
        if token is None:  # pragma: no cover
            raise TypeError("token must not be None")
        if token._redeemed:
            raise ValueError("token has already been used")
        if token._var is not self:
            raise ValueError("token is not for this RunVar")
        runner = _current_runner()
        if token.old_value is RunVarToken.MISSING:
            runner._runvars.pop(self, None)
        else:
            runner._runvars[self] = token.old_value
        token._redeemed = True

    def __repr__(self) -> str:
        return f"<RunVar name={self._name!r}>"


class RunVarToken(Generic[T]):
    MISSING = object()
    __slots__ = ("_var", "old_value", "_redeemed")

    def __init__(self, var: RunVar[T], old_value: Any) -> None:
        self._var = var
        self.old_value = old_value
        self._redeemed = False

