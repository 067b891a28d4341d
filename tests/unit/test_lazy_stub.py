"""The controller's per-agent stub makes each method's callable at first use,
exactly as the generated stub would have made it."""

from __future__ import annotations

import asyncio

import pytest

from brownout.v1 import agent_pb2 as pb
from controller.agents import aioclient

pytestmark = pytest.mark.unit


def test_every_rpc_of_the_service_is_known_with_its_path() -> None:
    service = pb.DESCRIPTOR.services_by_name["Agent"]
    assert set(aioclient._METHODS) == {m.name for m in service.methods}
    for m in service.methods:
        kind, path, kw = aioclient._METHODS[m.name]
        assert path == f"/brownout.v1.Agent/{m.name}"
        streams = (m.client_streaming, m.server_streaming)
        assert (
            kind
            == {
                (False, False): "unary_unary",
                (False, True): "unary_stream",
                (True, True): "stream_stream",
                (True, False): "stream_unary",
            }[streams]
        )
        assert kw["request_serializer"] is not None and kw["response_deserializer"] is not None


def test_only_the_methods_used_are_made() -> None:
    async def check() -> None:
        client = aioclient.AsyncAgentClient("127.0.0.1:1", 0.1)  # a channel binds to the loop
        try:
            stub = client.stub
            assert not {n for n in vars(stub) if not n.startswith("_")}
            first = stub.GetInfo
            assert stub.GetInfo is first  # made once
            assert {n for n in vars(stub) if not n.startswith("_")} == {"GetInfo"}
        finally:
            await client.close()

    asyncio.run(check())
