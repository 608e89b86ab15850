"""helloworld: the smallest useful service. Run it with `micro run examples/helloworld`."""

from collections.abc import AsyncIterator

import msgspec

from micro import Context, Service, public


class CallRequest(msgspec.Struct):
    """Who to greet."""

    name: str


class CallResponse(msgspec.Struct):
    """The greeting."""

    message: str


class StreamRequest(msgspec.Struct):
    """How many greetings to stream."""

    name: str
    count: int = 3


service = Service("helloworld")


@service.handler
class Helloworld:
    """Helloworld.Call and Helloworld.Stream."""

    @public
    async def call(self, ctx: Context, req: CallRequest) -> CallResponse:
        """Greet by name."""
        return CallResponse(message=f"Hello {req.name}")

    async def stream(self, ctx: Context, req: StreamRequest) -> AsyncIterator[CallResponse]:
        """Greet ``count`` times, as a stream."""
        for i in range(req.count):
            yield CallResponse(message=f"Hello {req.name} #{i + 1}")


if __name__ == "__main__":
    service.run()
