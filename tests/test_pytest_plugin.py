"""The pytest plugin (ringtrio/_pytest_plugin.py), exercised through pytester.

Each test writes a small test module into a temporary directory and runs
pytest on it in-process; the plugin is active there because it is
registered through the ``pytest11`` entry point.  pytest-trio is installed
too, so every run also shows that the two plugins coexist.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# Both plugins define the fixtures nursery / mock_clock / autojump_clock, and
# which definition pytest picks depends on which plugin is loaded last.
# "-p name" loads a plugin early, so these pin each order explicitly.
PLUGIN_ORDERS = {
    "entry-points": [],
    "ringtrio-first": ["-p", "no:ringtrio", "-p", "ringtrio._pytest_plugin"],
    "pytest-trio-first": ["-p", "no:trio", "-p", "pytest_trio.plugin"],
}


@pytest.fixture(autouse=True)
def quiet_pytest_asyncio(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-asyncio (installed with the test extra) warns in every run whose
    # configuration does not set its fixture loop scope.  (After pytester's
    # own setup, which clears PYTEST_ADDOPTS.)
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")


@pytest.fixture(params=list(PLUGIN_ORDERS), ids=list(PLUGIN_ORDERS))
def plugin_args(request: pytest.FixtureRequest) -> list[str]:
    return PLUGIN_ORDERS[request.param]


def test_marker_runs_test_under_ringtrio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, sniffio, ringtrio

        @pytest.mark.ringtrio
        async def test_marked():
            await ringtrio.sleep(0)
            assert sniffio.current_async_library() == "ringtrio"

        def test_plain_sync_test_is_untouched():
            with pytest.raises(sniffio.AsyncLibraryNotFoundError):
                sniffio.current_async_library()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_unmarked_async_test_is_not_claimed_without_ringtrio_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        async def test_unmarked():
            pass
        """
    )
    result = pytester.runpytest()
    # pytest's own verdict on an async test nobody runs, with how to run it
    # under ringtrio in front.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_unmarked is an async test, and no plugin ran it.  To run it under ringtrio, "
            "mark it with @pytest.mark.ringtrio, or set ringtrio_mode = true*",
            "*async def functions are not natively supported*",
        ]
    )


def test_unmarked_async_test_meant_for_another_library_gets_pytests_message(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.anyio
        async def test_for_anyio():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:anyio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])
    result.stdout.no_fnmatch_line("*no plugin ran it*")


# pytest-asyncio (installed with the test extra) in auto mode claims every
# async test.
ASYNCIO_AUTO_INI = """
    [pytest]
    asyncio_mode = auto
    """


def test_marked_test_claimed_by_pytest_asyncio_auto_mode_says_so(pytester: pytest.Pytester) -> None:
    pytester.makeini(ASYNCIO_AUTO_INI)
    pytester.makepyfile(
        """
        import asyncio, pytest, ringtrio

        @pytest.mark.ringtrio
        async def test_marked():
            await ringtrio.sleep(0)

        async def test_asyncio_still_runs_its_own():
            await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_marked is marked 'ringtrio', but pytest-asyncio runs in auto mode "
            "(asyncio_mode = auto) and has claimed it as an asyncio test*Set asyncio_mode = strict*"
        ]
    )
    result.stdout.no_fnmatch_line("*not an async function*")


def test_marked_ringtrio_and_asyncio_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ringtrio
        @pytest.mark.asyncio
        async def test_both():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_both is marked both 'ringtrio' and 'asyncio'; choose one*"])


def test_ringtrio_mode_marks_async_tests_but_not_trio_tests(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        ringtrio_mode = true
        """
    )
    pytester.makepyfile(
        """
        import pytest, sniffio, trio, ringtrio

        async def test_unmarked_async():
            await ringtrio.sleep(0)
            assert sniffio.current_async_library() == "ringtrio"

        @pytest.mark.trio
        async def test_marked_trio():
            await trio.sleep(0)
            assert sniffio.current_async_library() == "trio"

        class TestInAClass:
            async def test_method(self):
                assert sniffio.current_async_library() == "ringtrio"

        def test_sync():
            pass
        """
    )
    result = pytester.runpytest("-m", "ringtrio")
    result.assert_outcomes(passed=2, deselected=2)
    result = pytester.runpytest()
    result.assert_outcomes(passed=4)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ("trio_mode = true", "*ringtrio_mode and trio_mode are both enabled*"),
        ("asyncio_mode = auto", "*ringtrio_mode is enabled and pytest-asyncio runs in auto mode*"),
    ],
    ids=["pytest-trio", "pytest-asyncio"],
)
def test_ringtrio_mode_with_another_plugins_auto_mode_is_a_usage_error(
    pytester: pytest.Pytester, other: str, message: str
) -> None:
    # Each would claim every async test.
    pytester.makeini(f"[pytest]\nringtrio_mode = true\n{other}\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_async_fixtures_set_up_in_order_and_torn_down_in_reverse(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import contextvars
        import pytest, ringtrio

        log = []
        where = contextvars.ContextVar("where")

        @pytest.fixture
        def sync_fixture():
            log.append("sync setup")
            yield "sync"
            log.append("sync teardown")

        @pytest.fixture
        async def plain():
            await ringtrio.sleep(0)
            log.append("plain setup")
            return "plain"

        @pytest.fixture
        async def outer(plain, sync_fixture):
            log.append(f"outer setup ({plain}, {sync_fixture})")
            where.set("set by outer")
            yield "outer"
            await ringtrio.sleep(0)
            log.append("outer teardown")

        @pytest.fixture
        async def inner(outer):
            log.append(f"inner setup ({outer})")
            yield outer + "+inner"
            await ringtrio.sleep(0)
            log.append("inner teardown")

        @pytest.fixture
        def sync_on_async(inner):
            # A sync fixture using an async one still gets the real value.
            return inner.upper()

        @pytest.mark.ringtrio
        async def test_uses_fixtures(inner, sync_on_async):
            assert inner == "outer+inner"
            assert sync_on_async == "OUTER+INNER"
            # Fixtures and test share one task, so context variables carry over.
            assert where.get() == "set by outer"
            log.append("test body")

        def test_order():
            assert log == [
                "sync setup",
                "plain setup",
                "outer setup (plain, sync)",
                "inner setup (outer)",
                "test body",
                "inner teardown",
                "outer teardown",
                "sync teardown",
            ]
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_fixture_teardown_runs_when_the_test_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio

        log = []

        @pytest.fixture
        async def resource():
            yield
            await ringtrio.sleep(0)
            log.append("teardown")

        @pytest.mark.ringtrio
        async def test_fails(resource):
            assert 1 + 1 == 3

        def test_teardown_ran():
            assert log == ["teardown"]
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)


def test_errors_in_fixture_setup_and_teardown_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio

        log = []

        @pytest.fixture
        async def broken_setup():
            await ringtrio.sleep(0)
            raise KeyError("setup went wrong")
            yield

        @pytest.fixture
        async def broken_teardown():
            yield
            raise LookupError("teardown went wrong")

        @pytest.fixture
        async def healthy():
            yield
            log.append("healthy torn down")

        @pytest.mark.ringtrio
        async def test_setup_fails(healthy, broken_setup):
            log.append("test body")  # never reached

        @pytest.mark.ringtrio
        async def test_teardown_fails(broken_teardown):
            pass

        def test_log():
            assert log == ["healthy torn down"]
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*KeyError: 'setup went wrong'",
            "*raised by async fixture 'broken_setup' during setup*",
            "*LookupError: teardown went wrong",
            "*raised by async fixture 'broken_teardown' at teardown*",
        ]
    )


def test_async_fixture_with_broader_scope_is_rejected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        async def shared():
            return 1

        @pytest.mark.ringtrio
        async def test_one(shared):
            pass

        @pytest.mark.ringtrio
        async def test_two(shared):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*async fixture 'shared' has scope 'module'*must be function-scoped*"])


def test_nursery_fixture(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio
        from ringtrio.testing import wait_all_tasks_blocked

        log = []

        async def ticker(name):
            try:
                await ringtrio.sleep_forever()
            except ringtrio.Cancelled:
                log.append(f"{name} cancelled")
                raise

        @pytest.fixture
        async def background(nursery):
            # A fixture starting work in the same nursery the test gets.
            nursery.start_soon(ticker, "fixture task")
            yield nursery

        @pytest.mark.ringtrio
        async def test_shares_the_nursery(nursery, background):
            assert background is nursery
            nursery.start_soon(ticker, "test task")
            await wait_all_tasks_blocked()
            log.append("test done")

        def test_tasks_were_cancelled_after_the_test():
            assert log[0] == "test done"
            assert sorted(log[1:]) == ["fixture task cancelled", "test task cancelled"]

        @pytest.mark.ringtrio
        async def test_background_crash_fails_the_test(nursery):
            async def crash():
                await ringtrio.sleep(0.01)
                raise OSError("background task died")
            nursery.start_soon(crash)
            await ringtrio.sleep(30)  # cancelled by the crash

        def test_sync_test_cannot_use_it(nursery):
            pass
        """
    )
    result = pytester.runpytest(*plugin_args)
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["E*OSError: background task died"])
    result.stdout.fnmatch_lines(["*the 'nursery' fixture needs an async test run by ringtrio*"])


def test_autojump_clock(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest, ringtrio
        from ringtrio.testing import MockClock

        @pytest.mark.ringtrio
        async def test_an_hour_passes_instantly(autojump_clock):
            assert isinstance(autojump_clock, MockClock)
            start = time.perf_counter()
            await ringtrio.sleep(3600)
            assert ringtrio.current_time() >= 3600
            assert time.perf_counter() - start < 600  # not the hour

        @pytest.fixture
        async def waited_an_hour(autojump_clock):
            # The clock is the run's clock for fixtures too, even when the
            # test does not ask for it itself.
            await ringtrio.sleep(3600)

        @pytest.mark.ringtrio
        async def test_clock_used_through_a_fixture(waited_an_hour):
            assert ringtrio.current_time() >= 3600
        """
    )
    result = pytester.runpytest(*plugin_args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert result.duration < 600  # not the two hours


def test_mock_clock(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio
        from ringtrio.testing import MockClock

        @pytest.mark.ringtrio
        async def test_time_only_moves_when_told(mock_clock):
            assert isinstance(mock_clock, MockClock)
            start = ringtrio.current_time()
            await ringtrio.sleep(0)
            assert ringtrio.current_time() == start
            mock_clock.jump(10)
            assert ringtrio.current_time() == start + 10
        """
    )
    result = pytester.runpytest(*plugin_args)
    result.assert_outcomes(passed=1)


def test_failure_in_a_nursery_reports_the_inner_exception(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio

        async def child():
            await ringtrio.sleep(0)
            raise ValueError("the real problem")

        @pytest.mark.ringtrio
        async def test_nested_nurseries():
            async with ringtrio.open_nursery() as outer:
                async def middle():
                    async with ringtrio.open_nursery() as inner:
                        inner.start_soon(child)
                outer.start_soon(middle)

        @pytest.mark.ringtrio
        async def test_two_failures_stay_a_group():
            async def fail(exc):
                raise exc
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(fail, KeyError("one"))
                nursery.start_soon(fail, IndexError("two"))
        """
    )
    result = pytester.runpytest("-vv")  # -vv: untruncated summary lines
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            # The report starts at the test, goes through the nurseries and
            # ends where the exception was raised.
            "*async with ringtrio.open_nursery() as outer:",
            "*async with ringtrio.open_nursery() as inner:",
            '*raise ValueError("the real problem")',
            "E*ValueError: the real problem",
        ]
    )
    result.stdout.fnmatch_lines(["FAILED *test_nested_nurseries - ValueError: the real problem"])
    result.stdout.fnmatch_lines(["FAILED *test_two_failures_stay_a_group - ExceptionGroup*"])


def test_skip_and_xfail_inside_ringtrio_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio

        @pytest.mark.ringtrio
        async def test_skip_from_child_task():
            async def child():
                pytest.skip("not today")
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(child)

        @pytest.mark.ringtrio
        @pytest.mark.xfail(raises=ZeroDivisionError, strict=True)
        async def test_expected_failure():
            await ringtrio.sleep(0)
            1 / 0
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(skipped=1, xfailed=1)


def test_hypothesis_examples_each_get_a_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio
        from hypothesis import given, settings, strategies as st

        runs = []

        @pytest.mark.ringtrio
        @settings(max_examples=5, deadline=None, database=None)
        @given(x=st.integers())
        async def test_property(x):
            await ringtrio.sleep(0)
            runs.append(x)

        def test_ran_several_examples():
            assert len(runs) >= 2
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_coexists_with_pytest_trio(pytester: pytest.Pytester, plugin_args: list[str]) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest, sniffio, trio, trio.testing, ringtrio
        import ringtrio.testing

        @pytest.fixture
        async def trio_resource():
            await trio.sleep(0)
            yield "trio"

        @pytest.fixture
        async def ringtrio_resource():
            await ringtrio.sleep(0)
            yield "ringtrio"

        @pytest.mark.trio
        async def test_trio_test(trio_resource, nursery, autojump_clock):
            assert sniffio.current_async_library() == "trio"
            assert trio_resource == "trio"
            assert isinstance(nursery, trio.Nursery)
            assert isinstance(autojump_clock, trio.testing.MockClock)
            start = time.perf_counter()
            await trio.sleep(3600)
            assert time.perf_counter() - start < 600  # not the hour

        @pytest.mark.trio
        async def test_trio_mock_clock(mock_clock):
            assert isinstance(mock_clock, trio.testing.MockClock)

        @pytest.mark.ringtrio
        async def test_ringtrio_test(ringtrio_resource, nursery, autojump_clock):
            assert sniffio.current_async_library() == "ringtrio"
            assert ringtrio_resource == "ringtrio"
            assert isinstance(nursery, ringtrio.Nursery)
            assert isinstance(autojump_clock, ringtrio.testing.MockClock)
            await ringtrio.sleep(3600)

        @pytest.mark.ringtrio
        async def test_ringtrio_mock_clock(mock_clock):
            assert isinstance(mock_clock, ringtrio.testing.MockClock)
        """
    )
    result = pytester.runpytest(*plugin_args)
    result.assert_outcomes(passed=4)


def test_marked_sync_test_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ringtrio
        def test_not_async():
            pass

        @pytest.mark.ringtrio
        @pytest.mark.trio
        async def test_claimed_twice():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_not_async is marked ringtrio but is not an async function*"])
    result.stdout.fnmatch_lines(["*test_claimed_twice is marked both 'ringtrio' and 'trio'*"])


def test_hang_timeout_fails_a_deadlocked_test_with_the_task_tree(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio

        @pytest.mark.ringtrio
        async def test_deadlock():
            lock = ringtrio.Lock()
            never = ringtrio.Event()

            async def holder():
                async with lock:
                    await never.wait()

            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(holder)
                await ringtrio.testing.wait_all_tasks_blocked()
                async with lock:
                    pass

        @pytest.mark.ringtrio
        async def test_fine(nursery):
            nursery.start_soon(ringtrio.sleep_forever)
            await ringtrio.sleep(0.01)

        @pytest.mark.ringtrio
        async def test_sleeps_past_the_timeout():
            # Not hung: a timer will wake it.
            await ringtrio.sleep(0.9)
            with ringtrio.move_on_after(0.9):
                await ringtrio.Event().wait()
        """
    )
    result = pytester.runpytest("--ringtrio-hang-timeout=0.3")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_deadlock hung: no task ran and no timer was armed for 0.3 s "
            "(--ringtrio-hang-timeout=0.3), so it was cancelled.*",
            "ringtrio task tree at t=*",
            "*at test_deadlock at test_hang_timeout_fails_a_deadlocked_test_with_the_task_tree.py:15",
            "*waiting for: Lock.acquire (held by *holder)",
            "*test_deadlock.<locals>.holder [[]parked]",
            "*waiting for: Event.wait",
        ]
    )


def test_hang_timeout_must_be_positive(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, ringtrio

        @pytest.mark.ringtrio
        async def test_it():
            await ringtrio.sleep(0)
        """
    )
    result = pytester.runpytest("--ringtrio-hang-timeout=0")
    result.stderr.fnmatch_lines(["*--ringtrio-hang-timeout must be a finite number of seconds > 0, not 0.0*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
