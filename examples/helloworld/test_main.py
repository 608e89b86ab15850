"""helloworld tested through micro.testing, over real RPC."""

from main import CallRequest, CallResponse, StreamRequest, service

from micro.testing import serve


async def test_call() -> None:
    async with serve(service) as client:
        resp = await client.call(
            "Helloworld.Call", CallRequest(name="Alice"), response_type=CallResponse
        )
    assert resp.message == "Hello Alice"


async def test_stream() -> None:
    async with serve(service) as client:
        got = [
            m
            async for m in client.stream(
                "Helloworld.Stream", StreamRequest("Bob", 2), response_type=CallResponse
            )
        ]
    assert [m.message for m in got] == ["Hello Bob #1", "Hello Bob #2"]
