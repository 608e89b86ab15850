"""The ``fastapi`` target of ``python -m bench gateway``: FastAPI serving ``POST /echo`` with
a pydantic model both ways, as a FastAPI user writes it.

A module of its own, imported only by that target's child, and without ``from __future__
import annotations``: FastAPI reads the handler's annotations at runtime to find the body
model.
"""

from fastapi import FastAPI
from pydantic import BaseModel

__all__ = ["EchoModel", "app"]


class EchoModel(BaseModel):
    """The JSON body both ways: ``{"message": ...}``."""

    message: str


app = FastAPI()


@app.post("/echo")
async def echo(request: EchoModel) -> EchoModel:
    """Answer with the request's message."""
    return request
