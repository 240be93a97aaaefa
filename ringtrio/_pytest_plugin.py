"""pytest plugin: run ``async def`` tests and their async fixtures under ringtrio.

Registered through the ``pytest11`` entry point ``ringtrio``, so installing
ringtrio is enough to enable it.

* ``@pytest.mark.ringtrio`` runs an ``async def`` test inside ``ringtrio.run``.
* ``ringtrio_mode = true`` in the pytest ini file marks every ``async def``
  test, except tests already marked for another async library (``trio``,
  ``asyncio``, ``anyio``), which are left to their own plugin.
* Async fixtures (``async def`` and async generators) used by a ringtrio test
  are evaluated inside the same ``ringtrio.run`` as the test, in the order
  pytest resolved them, and async-generator fixtures are finalised in reverse
  order once the test is over.  They must be function-scoped.
* Built-in fixtures: ``nursery`` (open for the whole test, cancelled when it
  ends), ``mock_clock`` and ``autojump_clock`` (a
  :class:`ringtrio.testing.MockClock` that becomes the run's clock).  Any
  fixture value that is a :class:`ringtrio.lowlevel.Clock` is used as the
  clock and any :class:`ringtrio.lowlevel.Instrument` is installed.

pytest-trio may be installed alongside: it defines fixtures with the same
names, so each of ours checks which kind of test asked for it and stays out
of the way of ``@pytest.mark.trio`` tests.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

import ringtrio
from ringtrio.lowlevel import Clock, Instrument, TaskTree
from ringtrio._core._internal_api import _chain_tracebacks
from ringtrio.testing import HangDetector, MockClock

# Ctrl-C raises KeyboardInterrupt in these helpers at once, as in the user's
# own code that they run (they are not the runtime: see _core/_ki.py).
_KI_PROTECTION = False

if TYPE_CHECKING:
    from _pytest.fixtures import SubRequest

MARKER = "ringtrio"

# Auto mode must not steal tests that another async plugin is meant to run.
_OTHER_ASYNC_MARKERS = ("trio", "asyncio", "anyio")

# The async fixtures (as placeholders) that pytest set up for one item, in the
# order pytest resolved them, which is a valid dependency order.
_ASYNC_FIXTURES = pytest.StashKey[list["_AsyncFixture"]]()
# Set while the item's ringtrio.run is in progress.
_RUNNING = pytest.StashKey[bool]()


# --------------------------------------------------------------------------
# configuration and collection
# --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "ringtrio_mode",
        "run every async def test (and its async fixtures) under ringtrio",
        type="bool",
        default=False,
    )
    parser.addoption(
        "--ringtrio-hang-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail a ringtrio test in which no task has run and no timer was armed for "
        "SECONDS (a deadlock): "
        "the test is cancelled and the failure shows what every task waited on "
        "(ringtrio.lowlevel.task_tree)",
    )


def pytest_configure(config: pytest.Config) -> None:
    hang_timeout = config.getoption("ringtrio_hang_timeout", None)
    if hang_timeout is not None and not 0 < hang_timeout < float("inf"):
        raise pytest.UsageError(
            f"--ringtrio-hang-timeout must be a finite number of seconds > 0, not {hang_timeout}"
        )
    config.addinivalue_line(
        "markers",
        f"{MARKER}: run this async test and its async fixtures under ringtrio.run",
    )
    if config.getini("ringtrio_mode") and _ini_flag(config, "trio_mode"):
        raise pytest.UsageError(
            "ringtrio_mode and trio_mode are both enabled: each would claim every "
            "async test.  Enable one and mark the other library's tests explicitly."
        )
    if config.getini("ringtrio_mode") and _asyncio_auto_mode(config):
        raise pytest.UsageError(
            "ringtrio_mode is enabled and pytest-asyncio runs in auto mode "
            "(asyncio_mode = auto): each would claim every async test.  Set "
            "asyncio_mode = strict and mark asyncio tests with @pytest.mark.asyncio, "
            "or drop ringtrio_mode and mark ringtrio tests with @pytest.mark.ringtrio."
        )


def _ini_flag(config: pytest.Config, name: str) -> bool:
    # getini() raises ValueError for an option no loaded plugin registered.
    try:
        return bool(config.getini(name))
    except ValueError:
        return False


def _asyncio_auto_mode(config: pytest.Config) -> bool:
    # pytest-asyncio's mode: its command-line option, else its ini option.
    # Neither exists when pytest-asyncio is not installed.
    try:
        mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    except ValueError:
        return False
    return str(mode) == "auto"


def _test_function(item: pytest.Function) -> Any:
    # With Hypothesis, item.obj is a sync wrapper; the user's function is inside.
    hypothesis = getattr(item.obj, "hypothesis", None)
    if hypothesis is not None:
        return hypothesis.inner_test
    return item.obj


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getini("ringtrio_mode"):
        return
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        if not inspect.iscoroutinefunction(_test_function(item)):
            continue
        if any(item.get_closest_marker(name) for name in (MARKER, *_OTHER_ASYNC_MARKERS)):
            continue
        item.add_marker(MARKER)


def _is_ringtrio_test(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker(MARKER) is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _is_ringtrio_test(item):
        return
    if item.get_closest_marker("trio") is not None:
        pytest.fail(
            f"{item.nodeid} is marked both 'ringtrio' and 'trio'; choose one",
            pytrace=False,
        )
    if item.get_closest_marker("asyncio") is not None:
        if _asyncio_auto_mode(item.config):
            # pytest-asyncio in auto mode marks every async test 'asyncio' and
            # runs it in an asyncio event loop; our own check would only see
            # the synchronous wrapper it puts in place of the test function.
            pytest.fail(
                f"{item.nodeid} is marked 'ringtrio', but pytest-asyncio runs in auto "
                "mode (asyncio_mode = auto) and has claimed it as an asyncio test; "
                "ringtrio cannot run inside asyncio's event loop.  Set asyncio_mode = "
                "strict (pytest-asyncio's default) and mark asyncio tests with "
                "@pytest.mark.asyncio, or run this test where pytest-asyncio is not "
                "in auto mode (-p no:asyncio disables it).",
                pytrace=False,
            )
        pytest.fail(
            f"{item.nodeid} is marked both 'ringtrio' and 'asyncio'; choose one",
            pytrace=False,
        )
    # Fresh list per run of the item (a rerun plugin may set it up again).
    item.stash[_ASYNC_FIXTURES] = []
    item.stash[_RUNNING] = False


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


class _AsyncFixture:
    """Stands in for a fixture that can only be evaluated inside the run.

    pytest's fixture machinery is synchronous, so for a ringtrio test pytest
    receives this object as the fixture's value; the test runner replaces it
    with the real value once ``ringtrio.run`` has started.
    """

    def __init__(self, name: str, func: Any, kwargs: dict[str, Any]) -> None:
        self.name = name
        self.func = func
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<ringtrio fixture {self.name!r} (evaluated inside the test's run)>"

    async def setup(self, values: dict[_AsyncFixture, Any]) -> tuple[Any, Any]:
        """Evaluate the fixture; return its value and the generator to finish
        at teardown (None when there is nothing to tear down)."""
        __tracebackhide__ = True
        result = self.func(**_resolve(self.kwargs, values))
        if inspect.isasyncgen(result):
            try:
                return await anext(result), result
            except StopAsyncIteration:
                raise RuntimeError(f"async generator fixture {self.name!r} did not yield") from None
        if inspect.isgenerator(result):
            try:
                return next(result), result
            except StopIteration:
                raise RuntimeError(f"generator fixture {self.name!r} did not yield") from None
        if inspect.iscoroutine(result):
            return await result, None
        return result, None

    async def teardown(self, gen: Any, in_flight: BaseException | None) -> None:
        """Run the code after the fixture's ``yield``.

        ``in_flight`` is a Cancelled exception on its way out to the cancel
        scope that raised it; it is thrown in at the ``yield`` (see
        ``_run_test_and_fixtures``).  Anything else the test raised is not the
        fixture's business, as in plain pytest.
        """
        __tracebackhide__ = True
        if gen is None:
            if in_flight is not None:
                raise in_flight
            return
        try:
            if inspect.isasyncgen(gen):
                if in_flight is not None:
                    await gen.athrow(in_flight)
                else:
                    await anext(gen)
            elif in_flight is not None:
                gen.throw(in_flight)
            else:
                next(gen)
        except (StopAsyncIteration, StopIteration):
            return
        if inspect.isasyncgen(gen):
            await gen.aclose()
        else:
            gen.close()
        raise RuntimeError(f"fixture {self.name!r} yielded more than once")


def _resolve(kwargs: dict[str, Any], values: dict[_AsyncFixture, Any]) -> dict[str, Any]:
    return {
        name: values[value] if isinstance(value, _AsyncFixture) else value
        for name, value in kwargs.items()
    }


async def _test_nursery() -> Any:
    async with ringtrio.open_nursery() as nursery:
        yield nursery
        # The test is over: background tasks are not waited for, they are
        # cancelled (a task that crashed earlier is still reported).
        nursery.cancel_scope.cancel()


# What a ringtrio test gets for each built-in fixture name, whichever plugin's
# definition of that name pytest picked.
_BUILTINS: dict[str, Any] = {
    "nursery": _test_nursery,
    "mock_clock": MockClock,
    "autojump_clock": functools.partial(MockClock, autojump_threshold=0),
}


def _is_builtin_definition(fixturedef: pytest.FixtureDef[Any]) -> bool:
    # Both this plugin and pytest-trio define nursery/mock_clock/autojump_clock
    # at plugin level, and which definition pytest picks depends on the order
    # in which the plugins were loaded.  A definition from a conftest or test
    # module is the user's own and is left alone.
    module = getattr(fixturedef.func, "__module__", None)
    return fixturedef.argname in _BUILTINS and module in (__name__, "pytest_trio.plugin")


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: SubRequest) -> Any:
    # For a fixture of broader scope request.node is the module/session; the
    # test that triggered the setup is only reachable as _pyfuncitem.
    item = getattr(request, "_pyfuncitem", request.node)
    if not _is_ringtrio_test(item):
        if (
            fixturedef.argname == "nursery"
            and _is_builtin_definition(fixturedef)
            and item.get_closest_marker("trio") is None
        ):
            _fail_fixture(fixturedef, request, _NURSERY_OUTSIDE_RINGTRIO)
        return None  # sync test, or another async plugin's test

    func = fixturedef.func
    substituted = _is_builtin_definition(fixturedef)
    if substituted:
        func = _BUILTINS[fixturedef.argname]
        kwargs: dict[str, Any] = {}
    else:
        kwargs = {name: request.getfixturevalue(name) for name in fixturedef.argnames}

    # A sync fixture that depends on an async one has to run inside the run
    # as well, or it would receive a placeholder instead of a value.
    needs_run = (
        inspect.iscoroutinefunction(func)
        or inspect.isasyncgenfunction(func)
        or any(isinstance(value, _AsyncFixture) for value in kwargs.values())
    )
    if needs_run:
        if fixturedef.scope != "function":
            _fail_fixture(
                fixturedef,
                request,
                f"async fixture {fixturedef.argname!r} has scope {fixturedef.scope!r}; "
                "ringtrio evaluates async fixtures inside each test's own run, "
                "so they must be function-scoped",
            )
        if item.stash.get(_RUNNING, False):
            _fail_fixture(
                fixturedef,
                request,
                f"async fixture {fixturedef.argname!r} was requested while the test "
                "was already running (request.getfixturevalue?); request it as a "
                "test argument instead",
            )
        if not substituted:
            func = _bind_to_instance(fixturedef, request)
        value: Any = _AsyncFixture(fixturedef.argname, func, kwargs)
        item.stash.setdefault(_ASYNC_FIXTURES, []).append(value)
    elif substituted:
        value = func()
    else:
        return None  # an ordinary sync fixture: pytest's own setup does it

    # Returning a value from this firstresult hook means we took over from
    # pytest's default implementation, whose job includes filling the cache.
    fixturedef.cached_result = (value, fixturedef.cache_key(request), None)
    return value


def _fail_fixture(fixturedef: pytest.FixtureDef[Any], request: SubRequest, message: str) -> None:
    # pytest only runs a fixture's finalizers (and so resets it for the next
    # test) if cached_result is set, so a failed setup is cached like pytest's
    # own implementation does; otherwise every later use of the fixture
    # trips an internal assertion.
    try:
        pytest.fail(message, pytrace=False)
    except pytest.fail.Exception as exc:
        fixturedef.cached_result = (None, fixturedef.cache_key(request), (exc, exc.__traceback__))
        raise


def _bind_to_instance(fixturedef: pytest.FixtureDef[Any], request: SubRequest) -> Any:
    # Fixtures defined as methods of a test class must be bound to the
    # instance the test runs on; pytest keeps that logic private.
    try:
        from _pytest.fixtures import resolve_fixture_function
    except ImportError:  # pragma: no cover - pytest moved it
        return fixturedef.func
    return resolve_fixture_function(fixturedef, request)


def _shadowed_or(request: pytest.FixtureRequest, name: str, fallback: Any) -> Any:
    """The value of the same-named fixture this one hides, else ``fallback()``.

    Used when a test that is not a ringtrio test (a pytest-trio test, say)
    asks for one of our built-ins: requesting a fixture's own name from
    inside it yields the definition one level up, which is pytest-trio's if
    that plugin was loaded before us.
    """
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return fallback()


_NURSERY_OUTSIDE_RINGTRIO = (
    "the 'nursery' fixture needs an async test run by ringtrio "
    "(@pytest.mark.ringtrio, or ringtrio_mode = true) or by pytest-trio"
)


def _nursery_outside_ringtrio() -> Any:
    pytest.fail(_NURSERY_OUTSIDE_RINGTRIO, pytrace=False)


# For ringtrio tests the three fixtures below never run: pytest_fixture_setup
# above supplies their values.  Their bodies only serve other tests.


@pytest.fixture
def nursery(request: pytest.FixtureRequest) -> Any:
    """A ringtrio nursery that stays open for the whole test.

    Background tasks started in it may outlive the fixtures set up after it
    and the test itself; they are cancelled once the test has finished.
    """
    return _shadowed_or(request, "nursery", _nursery_outside_ringtrio)


@pytest.fixture
def mock_clock(request: pytest.FixtureRequest) -> Any:
    """A ``ringtrio.testing.MockClock()``, used as the clock of the test's run."""
    return _shadowed_or(request, "mock_clock", _BUILTINS["mock_clock"])


@pytest.fixture
def autojump_clock(request: pytest.FixtureRequest) -> Any:
    """A ``MockClock(autojump_threshold=0)``: sleeps finish as soon as every
    task is blocked.  Used as the clock of the test's run."""
    return _shadowed_or(request, "autojump_clock", _BUILTINS["autojump_clock"])


# --------------------------------------------------------------------------
# running the test
# --------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_ringtrio_test(pyfuncitem):
        return None
    __tracebackhide__ = True
    testfunc = pyfuncitem.obj
    # The same selection pytest's own pytest_pyfunc_call makes: only the
    # fixtures the test function names (funcargs also holds autouse ones).
    testargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    hypothesis = getattr(testfunc, "hypothesis", None)
    if hypothesis is None:
        if not inspect.iscoroutinefunction(testfunc):
            pytest.fail(f"{pyfuncitem.nodeid} is marked ringtrio but is not an async function", pytrace=False)
        _run_item(pyfuncitem, testfunc, testargs)
        return True

    # Hypothesis calls inner_test once per example, passing our fixture
    # kwargs plus the drawn values; every example gets its own run (and so
    # fresh async fixtures).  The function object can be shared by several
    # items (parametrize), so the wrapper is swapped in only for this call.
    inner = hypothesis.inner_test
    if not inspect.iscoroutinefunction(inner):
        pytest.fail(f"{pyfuncitem.nodeid} is marked ringtrio but is not an async function", pytrace=False)

    def run_example(*args: Any, **kwargs: Any) -> None:
        __tracebackhide__ = True
        _run_item(pyfuncitem, functools.partial(inner, *args), kwargs)

    hypothesis.inner_test = run_example
    try:
        testfunc(**testargs)
    finally:
        hypothesis.inner_test = inner
    return True


# pytest's own pytest_pyfunc_call (the last to run) fails an async test that
# no plugin ran, with a message that lists other libraries' plugins.  This
# wrapper adds how to run it under ringtrio.  (A second implementation of the
# hook in this plugin, so it needs a name of its own.)
@pytest.hookimpl(specname="pytest_pyfunc_call", wrapper=True)
def pytest_pyfunc_call_unclaimed(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    try:
        return (yield)
    except pytest.fail.Exception as exc:
        if "not natively supported" not in str(exc) or not inspect.iscoroutinefunction(pyfuncitem.obj):
            raise
        if any(pyfuncitem.get_closest_marker(name) for name in (MARKER, *_OTHER_ASYNC_MARKERS)):
            raise  # meant for another library, whose plugin is missing
        pytest_says = str(exc)
    # Outside the except block, so the report does not show pytest's failure
    # as the context of ours (its text is part of ours).
    pytest.fail(
        f"{pyfuncitem.nodeid} is an async test, and no plugin ran it.  To run it "
        "under ringtrio, mark it with @pytest.mark.ringtrio, or set "
        "ringtrio_mode = true in the pytest configuration to run every async "
        f"test under ringtrio.\n(pytest says: {pytest_says})",
        pytrace=False,
    )


def _run_item(item: pytest.Function, testfunc: Any, testargs: dict[str, Any]) -> None:
    __tracebackhide__ = True
    fixtures = item.stash.get(_ASYNC_FIXTURES, [])
    clock, instruments = _clock_and_instruments(item)
    hang = _HangFailure.for_item(item)
    if hang is not None:
        instruments.append(hang.detector)
    item.stash[_RUNNING] = True
    try:
        ringtrio.run(
            _run_test_and_fixtures,
            testfunc,
            testargs,
            fixtures,
            hang.scope if hang is not None else None,
            clock=clock,
            instruments=instruments,
        )
    except BaseException as exc:
        error: BaseException | None = exc
    else:
        error = None
    finally:
        item.stash[_RUNNING] = False
    if hang is not None and hang.tree is not None:
        # Whatever the cancellation made the test raise is not the story.
        pytest.fail(hang.message(item), pytrace=False)
    if error is None:
        return
    # Raised outside the except block so that the report does not show the
    # original (possibly a group) as the "context" of what we raise.
    raise _unwrap(error)


class _HangFailure:
    """--ringtrio-hang-timeout for one test: a HangDetector whose report
    takes the task tree and cancels the test (a scope around the test and
    its fixtures), which then fails with the tree as its message."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.scope = ringtrio.CancelScope()
        self.tree: str | None = None
        self.detector = HangDetector(timeout, on_hang=self._hung)

    @classmethod
    def for_item(cls, item: pytest.Function) -> _HangFailure | None:
        timeout = item.config.getoption("ringtrio_hang_timeout", None)
        return None if timeout is None else cls(timeout)

    def _hung(self, tree: TaskTree) -> None:
        if self.tree is None:
            self.tree = str(tree)
            self.scope.cancel(f"no task ran and no timer was armed for {self.timeout:g} s (--ringtrio-hang-timeout)")
        else:
            # Hung again after the cancellation (a shielded or uncancellable
            # wait): the run cannot be ended from here; say what it waits on.
            print(
                f"ringtrio: the test is still hung {self.timeout:g} s after it was cancelled:\n{tree}",
                file=sys.stderr,
                flush=True,
            )

    def message(self, item: pytest.Item) -> str:
        return (
            f"{item.nodeid} hung: no task ran and no timer was armed for {self.timeout:g} s "
            f"(--ringtrio-hang-timeout={self.timeout:g}), so it was cancelled.  "
            f"What every task was waiting on:\n{self.tree}"
        )


def _clock_and_instruments(item: pytest.Function) -> tuple[Clock | None, list[Instrument]]:
    # item.funcargs holds every fixture value of the item, including ones the
    # test did not name itself (autouse, or requested by another fixture).
    clocks: list[Clock] = []
    instruments: list[Instrument] = []
    for value in item.funcargs.values():
        if isinstance(value, Clock) and not any(value is c for c in clocks):
            clocks.append(value)
        elif isinstance(value, Instrument) and not any(value is i for i in instruments):
            instruments.append(value)
    if len(clocks) > 1:
        pytest.fail(f"{item.nodeid} uses more than one clock fixture: {clocks!r}", pytrace=False)
    return (clocks[0] if clocks else None), instruments


async def _run_test_and_fixtures(
    testfunc: Any,
    testargs: dict[str, Any],
    fixtures: list[_AsyncFixture],
    hang_scope: ringtrio.CancelScope | None = None,
) -> None:
    """Set up the async fixtures, run the test, tear the fixtures down (all
    inside ``hang_scope``, which --ringtrio-hang-timeout cancels)."""
    __tracebackhide__ = True
    if hang_scope is None:
        await _test_and_fixtures(testfunc, testargs, fixtures)
        return
    with hang_scope:
        await _test_and_fixtures(testfunc, testargs, fixtures)


async def _test_and_fixtures(testfunc: Any, testargs: dict[str, Any], fixtures: list[_AsyncFixture]) -> None:
    """Set up the async fixtures, run the test, tear the fixtures down.

    Everything happens in this one task, like a stack of ``async with``
    blocks: a fixture that yields inside a nursery or cancel scope keeps it
    open around everything set up after it, and teardown in reverse order
    closes the scopes in the order they were opened.  A background task
    crashing in such a nursery cancels its scope; the Cancelled raised in
    the test (or a later fixture) is then carried outwards through the
    fixtures' ``yield``s until the scope that raised it catches it, and the
    nursery reports the crash.
    """
    __tracebackhide__ = True
    values: dict[_AsyncFixture, Any] = {}
    active: list[tuple[_AsyncFixture, Any]] = []  # set up, not yet torn down
    errors: list[BaseException] = []
    in_flight: BaseException | None = None  # a Cancelled looking for its scope

    for fixture in fixtures:
        try:
            value, gen = await fixture.setup(values)
        except ringtrio.Cancelled as exc:
            in_flight = exc
            break
        except BaseException as exc:
            errors.append(_annotated(exc, f"raised by async fixture {fixture.name!r} during setup"))
            break
        values[fixture] = value
        active.append((fixture, gen))
    else:
        try:
            await testfunc(**_resolve(testargs, values))
        except ringtrio.Cancelled as exc:
            in_flight = exc
        except BaseException as exc:
            errors.append(_unwrap(exc))

    for fixture, gen in reversed(active):
        try:
            await fixture.teardown(gen, in_flight)
        except ringtrio.Cancelled as exc:
            in_flight = exc
        except BaseException as exc:
            # Whatever the fixture raised replaces the Cancelled, as it would
            # when an exception is raised in an ``except`` or ``finally``.
            in_flight = None
            errors.append(_annotated(exc, f"raised by async fixture {fixture.name!r} at teardown"))
        else:
            in_flight = None

    if in_flight is not None:
        error = RuntimeError("the test was cancelled by a cancel scope that none of its fixtures owns")
        error.__cause__ = in_flight
        errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("several errors in a ringtrio test and its fixtures", errors)


def _annotated(exc: BaseException, note: str) -> BaseException:
    exc = _unwrap(exc)
    exc.add_note(f"(ringtrio pytest plugin: {note})")
    return exc


def _unwrap(exc: BaseException) -> BaseException:
    """Replace a group holding exactly one exception by that exception,
    repeatedly.

    Nurseries always wrap a child's error in a group; for a single failure
    the report is easier to read with the error itself.  The frames the group
    travelled through (the test function, where the nursery was opened) are
    put in front of the inner exception's own frames, so the report still
    starts at the test.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        inner = exc.exceptions[0]
        exc = inner.with_traceback(_chain_tracebacks(exc.__traceback__, inner.__traceback__))
    return exc
