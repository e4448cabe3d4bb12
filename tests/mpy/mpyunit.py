# mpyunit: the smallest test runner that runs on MicroPython.
#
# tests/mpy/run.mjs starts a fresh MicroPython (the WebAssembly port, v1.27)
# per test file and runs `result = await mpyunit.run("test_x")` in it. run()
# imports the module, calls every function whose name starts with `test_` (in
# name order: MicroPython cannot tell definition order), prints
# `PASS name` or `FAIL name: Error: message` plus the traceback, and returns
# a JSON summary that run.mjs reads.
#
# Async tests: `async def test_x()` works. The port has asyncio with tasks,
# Event, Lock, gather, wait_for, sleep and sleep_ms, driven by the JavaScript
# event loop, but NO asyncio.run and no loop.run_until_complete: a test must
# never call those. run() is itself a coroutine, awaited at top level by
# run.mjs; it runs an async test as a task under wait_for (timeout_s), which
# fails the test with TimeoutError if it hangs. Tasks a test leaves behind
# die with the interpreter: run.mjs runs each file in its own Node process.
#
# Memory: before each test the runner collects garbage and notes
# gc.mem_alloc(); the growth during the test (GC permitting) is its
# allocation. The summary reports the module's size after import, the
# largest allocation by one test, and the heap in use after all tests.
#
# The port grows its heap on demand, so a test cannot prove that code fits a
# board's ~100 KB; the numbers are there to spot regressions.
#
# Helpers for tests: raises(exc_type, fn, *args, **kwargs) returns the
# exception that fn raised, or fails.

import asyncio
import gc
import json
import sys

timeout_s = 30


class Failure(AssertionError):
    """A test's check failed; the message says what was expected."""


def raises(exc_type, fn, *args, **kwargs):
    """Call fn and return the exc_type it raised; fail if it raised nothing."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise Failure("expected " + exc_type.__name__)


def _describe(e):
    text = str(e)
    return type(e).__name__ + (": " + text if text else "")


async def _call(fn):
    result = fn()
    if hasattr(result, "send"):  # a coroutine: on MicroPython a generator
        # In a task of its own: this port's wait_for cannot cancel run.mjs's
        # top-level coroutine (TopLevelCoro has no throw()), but works in a task.
        await asyncio.create_task(asyncio.wait_for(result, timeout_s))


async def run(module_name):
    """Run every test_* function of module_name; returns a JSON summary."""
    gc.collect()
    base = gc.mem_alloc()
    try:
        mod = __import__(module_name)
    except Exception as e:  # noqa: BLE001 - report any import failure, then stop
        print("FAIL " + module_name + " (import): " + _describe(e))
        sys.print_exception(e)
        return json.dumps({"passed": 0, "failed": 0, "import_error": _describe(e)})
    gc.collect()
    module_bytes = gc.mem_alloc() - base
    names = sorted(n for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n)))
    passed = failed = 0
    peak = 0
    peak_name = ""
    for name in names:
        gc.collect()
        before = gc.mem_alloc()
        try:
            await _call(getattr(mod, name))
        except Exception as e:  # noqa: BLE001 - a test runner reports every failure
            failed += 1
            print("FAIL " + name + ": " + _describe(e))
            sys.print_exception(e)
        else:
            passed += 1
            print("PASS " + name)
        used = gc.mem_alloc() - before
        if used > peak:
            peak = used
            peak_name = name
    gc.collect()
    return json.dumps(
        {
            "passed": passed,
            "failed": failed,
            "module_bytes": module_bytes,
            "peak_test_bytes": peak,
            "peak_test": peak_name,
            "heap_after": gc.mem_alloc(),
        }
    )
