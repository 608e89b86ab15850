"""micro.transport.eager: run a handler coroutine without a Task until it has to wait."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from micro.transport import eager


async def test_a_coroutine_that_never_suspends_is_done_in_one_step() -> None:
    async def handler() -> str:
        return "answer"

    assert eager.step(handler()) == (eager.DONE, "answer")


async def test_a_coroutine_that_raises_before_suspending_is_failed() -> None:
    async def handler() -> str:
        raise KeyError("missing")

    state, value = eager.step(handler())
    assert state == eager.FAILED
    assert isinstance(value, KeyError)


async def test_a_suspended_coroutine_resumes_in_a_task_and_finishes() -> None:
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    trail: list[str] = []

    async def handler() -> str:
        trail.append("before")
        value = await gate
        trail.append("after")
        return value.upper()

    coro = handler()
    state, yielded = eager.step(coro)
    assert state == eager.SUSPENDED
    assert yielded is gate
    assert trail == ["before"]
    task = eager.resume(coro, yielded)
    await asyncio.sleep(0)
    assert not task.done()  # still waiting on the gate
    gate.set_result("done")
    assert await asyncio.wait_for(task, 1) == "DONE"
    assert trail == ["before", "after"]


async def test_a_bare_yield_suspension_resumes_too() -> None:
    async def handler() -> int:
        await asyncio.sleep(0)  # yields None to the event loop
        await asyncio.sleep(0.001)
        return 7

    coro = handler()
    state, yielded = eager.step(coro)
    assert (state, yielded) == (eager.SUSPENDED, None)
    assert await asyncio.wait_for(eager.resume(coro, yielded), 1) == 7


async def test_an_exception_after_resuming_ends_the_task_with_it() -> None:
    async def handler() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    coro = handler()
    task = eager.resume(coro, eager.step(coro)[1])
    with pytest.raises(ValueError, match="late"):
        await asyncio.wait_for(task, 1)


async def test_cancelling_a_resumed_task_cancels_the_coroutine() -> None:
    started = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def handler() -> None:
        await asyncio.sleep(0)
        started.set()
        try:
            await asyncio.Event().wait()  # forever
        finally:
            cleaned_up.set()

    coro = handler()
    task = eager.resume(coro, eager.step(coro)[1])
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert cleaned_up.is_set()
    assert task.cancelled()


async def test_a_coroutine_may_catch_cancellation_and_still_answer() -> None:
    started = asyncio.Event()

    async def handler() -> str:
        await asyncio.sleep(0)
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "partial"
        return "complete"

    coro = handler()
    task = eager.resume(coro, eager.step(coro)[1])
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    assert await asyncio.wait_for(task, 1) == "partial"


async def test_the_resumed_task_sees_context_variables_set_around_the_step() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def handler() -> str:
        first = var.get()
        await asyncio.sleep(0)
        return f"{first}/{var.get()}"

    coro = handler()
    token = var.set("call-1")
    try:
        state, yielded = eager.step(coro)
        assert state == eager.SUSPENDED
        task = eager.resume(coro, yielded)
    finally:
        var.reset(token)
    assert await asyncio.wait_for(task, 1) == "call-1/call-1"


async def test_step_and_resume_in_a_context_of_their_own() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outside")

    async def handler() -> str:
        var.set("inside")
        await asyncio.sleep(0)
        return var.get()

    context = contextvars.copy_context()
    coro = handler()
    state, yielded = context.run(eager.step, coro)
    assert state == eager.SUSPENDED
    task = eager.resume(coro, yielded, context)
    assert await asyncio.wait_for(task, 1) == "inside"
    assert var.get() == "outside"  # the handler's assignment stayed in its context


async def test_a_coroutine_raising_cancelled_error_itself_does_not_escape_step() -> None:
    """``await`` on an already-cancelled future raises CancelledError without suspending;
    that must come back as FAILED, not propagate into the protocol callback."""
    cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cancelled.cancel()

    async def handler() -> None:
        await cancelled

    state, value = eager.step(handler())
    assert state == eager.FAILED
    assert isinstance(value, asyncio.CancelledError)


@pytest.mark.xfail(
    strict=True,
    reason="BUG: eager.step runs the first step outside any Task, so asyncio.current_task() "
    "is None and asyncio.timeout()/TaskGroup raise RuntimeError (see report)",
)
async def test_the_first_step_runs_with_a_current_task() -> None:
    async def handler() -> bool:
        return asyncio.current_task() is not None

    # The server steps handlers from Protocol.data_received, a plain loop callback.
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[tuple[int, object]] = loop.create_future()
    loop.call_soon(lambda: outcome.set_result(eager.step(handler())))
    assert await asyncio.wait_for(outcome, 1) == (eager.DONE, True)
