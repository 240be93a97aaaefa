"""RunVar: a variable whose value is local to one call of ringtrio.run()."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from ._final import final
from ._local import _current_runner

T = TypeVar("T")


@final
class RunVar(Generic[T]):
    """A variable whose value is local to one call of :func:`ringtrio.run`."""

    __slots__ = ("_name", "_default", "__weakref__")
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
        # As trio: the token records what get() returned, so a RunVar that
        # was never set but has a default records that default, and reset()
        # then sets it explicitly.
        try:
            previous = self.get()
        except LookupError:
            previous = RunVarToken.MISSING
        runner._runvars[self] = value
        return RunVarToken._create(self, previous)

    def reset(self, token: RunVarToken[T]) -> None:
        if token is None:  # pragma: no cover
            raise TypeError("token must not be None")
        if token.redeemed:
            raise ValueError("token has already been used")
        if token._var is not self:
            # trio's words, which its tests pin whole.
            raise ValueError("token is not for us")
        runner = _current_runner()
        if token.previous_value is RunVarToken.MISSING:
            runner._runvars.pop(self, None)
        else:
            runner._runvars[self] = token.previous_value
        token.redeemed = True

    def __repr__(self) -> str:
        return f"<RunVar name={self._name!r}>"


@final
class RunVarToken(Generic[T]):
    """What :meth:`RunVar.set` returns, for :meth:`RunVar.reset`.

    ``previous_value`` is the value :meth:`RunVar.get` gave before the set
    (the RunVar's default if it had no value of its own), or
    :attr:`RunVarToken.MISSING` if there was none; ``redeemed`` says whether
    the token was used by ``reset`` already.  trio's names.
    """

    MISSING: Any = object()
    __slots__ = ("_var", "previous_value", "redeemed", "__weakref__")

    _var: RunVar[T]
    previous_value: T | Any
    redeemed: bool

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("ringtrio.lowlevel.RunVarToken has no public constructor: RunVar.set() returns one")

    @classmethod
    def _create(cls, var: RunVar[T], previous_value: Any) -> RunVarToken[T]:
        self = object.__new__(cls)
        self._var = var
        self.previous_value = previous_value
        self.redeemed = False
        return self

    def __repr__(self) -> str:
        previous = "MISSING" if self.previous_value is RunVarToken.MISSING else repr(self.previous_value)
        return f"<RunVarToken for {self._var!r}, previous_value={previous}, redeemed={self.redeemed}>"

