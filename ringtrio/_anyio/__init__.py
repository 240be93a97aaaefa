"""ringtrio as an AnyIO backend.

``anyio.run(main, backend="ringtrio")`` and anyio code inside
``ringtrio.run`` both end up in :mod:`ringtrio._anyio._backend` (found
through ``ringtrio._anyio_hook``).  The modules here translate AnyIO's
backend interface into ringtrio's public API, one area per module:

* ``_tasks``: cancel scopes and task groups;
* ``_sync``: events, locks, semaphores, capacity limiters;
* ``_sockets``: TCP, UDP and UNIX sockets and listeners;
* ``_processes``: subprocesses and signals;
* ``_testing``: the test runner anyio's pytest plugin drives;
* ``_backend``: the ``AsyncBackend`` class that ties them together.

Nothing here is imported unless anyio asks for the backend, so ringtrio
works without anyio installed.
"""
