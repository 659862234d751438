"""A bare copier: websockets + protobuf, parse the master's fill, send the follower's order.

The floor the daemon is measured against, in the same run and against the same simulator:
no state, no journal, no sizing, no rate limiter, no logging. Opens are copied at the
master's volume with the label ``bare:<master position>``; closes close that copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from cmamd.protocol import codec
from cmamd.protocol.proto import messages_pb2 as pb
from cmamd.protocol.proto import model_pb2


class BareCopier:
    def __init__(self, ws: ClientConnection, master_id: int, follower_id: int) -> None:
        self._ws = ws
        self._master = master_id
        self._follower = follower_id
        self._copies: dict[int, tuple[int, int]] = {}  # master position -> (copy, volume)
        self._reader: asyncio.Task[None] | None = None
        self.sent = 0

    @classmethod
    async def start(
        cls, described: dict[str, Any], master_name: str, follower_name: str
    ) -> BareCopier:
        accounts = {a["name"]: a for a in described["accounts"]}
        master, follower = accounts[master_name], accounts[follower_name]
        ws = await connect(described["url"], compression=None, max_size=None)
        copier = cls(ws, master["account_id"], follower["account_id"])
        await copier._ask(
            pb.ProtoOAApplicationAuthReq(
                clientId=described["client_id"], clientSecret=described["client_secret"]
            )
        )
        for account in (master, follower):
            await copier._ask(
                pb.ProtoOAAccountAuthReq(
                    ctidTraderAccountId=account["account_id"],
                    accessToken=account["access_token"],
                )
            )
        copier._reader = asyncio.create_task(copier._copy())
        return copier

    async def _ask(self, message: Any) -> None:
        await self._ws.send(codec.encode(message, "bare"))
        while True:
            envelope = codec.decode(await self._ws.recv())  # type: ignore[arg-type]
            if envelope.client_msg_id == "bare":
                if isinstance(envelope.message, pb.ProtoOAErrorRes):
                    raise RuntimeError(f"bare copier refused: {envelope.message.errorCode}")
                return

    async def _copy(self) -> None:
        async for frame in self._ws:
            event = codec.decode(frame).message  # type: ignore[arg-type]
            if not (
                isinstance(event, pb.ProtoOAExecutionEvent)
                and event.executionType == model_pb2.ORDER_FILLED
            ):
                continue
            position = event.position
            if event.ctidTraderAccountId == self._follower:
                label = position.tradeData.label
                if label.startswith("bare:") and position.positionStatus == 1:
                    self._copies[int(label[5:])] = (position.positionId, position.tradeData.volume)
                continue
            if event.ctidTraderAccountId != self._master:
                continue
            if event.order.closingOrder:
                copy = self._copies.pop(position.positionId, None)
                if copy is not None:
                    await self._ws.send(
                        codec.encode(
                            pb.ProtoOAClosePositionReq(
                                ctidTraderAccountId=self._follower,
                                positionId=copy[0],
                                volume=copy[1],
                            )
                        )
                    )
                    self.sent += 1
            else:
                trade = position.tradeData
                await self._ws.send(
                    codec.encode(
                        pb.ProtoOANewOrderReq(
                            ctidTraderAccountId=self._follower,
                            symbolId=trade.symbolId,
                            orderType=model_pb2.MARKET,
                            tradeSide=trade.tradeSide,
                            volume=trade.volume,
                            label=f"bare:{position.positionId}",
                        )
                    )
                )
                self.sent += 1

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._ws.close()
