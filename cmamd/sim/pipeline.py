"""What happens to each frame a client sends, up to delivering what it causes.

The steps: size check, decode, record, heartbeat bookkeeping, rate limit (``max_rps``
requests admitted in any rolling second, heartbeats not counted), maintenance, the session
gates and handler, then delivery. The requester's first message carries its clientMsgId;
follow-up events and every copy sent to other connections carry none. Fault injection
applies at delivery: ``swallow_next`` lets the request take effect but drops everything it
would send to the requester (other connections still get their events), ``delay_responses``
holds that back instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

from cmamd.protocol import codec
from cmamd.protocol.proto import common_pb2, messages_pb2
from cmamd.sim.config import SimConfig
from cmamd.sim.faults import Faults
from cmamd.sim.handlers import Exchange, Handlers, common_error, oa_error
from cmamd.sim.session import RecordedRequest, Session

# Requests on history, held to their own lower rate; the docs name the deal list, and the
# other history requests are counted with it (the stricter reading).
HISTORICAL_PAYLOAD_TYPES = frozenset(
    codec.payload_type_of(cls)
    for cls in (
        messages_pb2.ProtoOADealListReq,
        messages_pb2.ProtoOADealListByPositionIdReq,
        messages_pb2.ProtoOAOrderListReq,
    )
)


class FramePipeline:
    def __init__(
        self,
        config: SimConfig,
        handlers: Handlers,
        faults: Faults,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.record: list[RecordedRequest] = []
        self.rate_limit_rejections = 0
        self.maintenance_until: int | None = None
        self._config = config
        self._handlers = handlers
        self._faults = faults
        self._clock = clock
        self._monotonic = monotonic

    def on_frame(self, session: Session, frame: str | bytes, received_at: float) -> None:
        """Handle one frame read from the socket at ``received_at`` (the rate window's time)."""
        if isinstance(frame, str):
            session.send(common_error("INVALID_REQUEST", "text frames are not accepted here"))
            return
        if len(frame) > codec.MAX_FRAME_BYTES:
            session.send(common_error("FRAME_TOO_LONG", f"frame of {len(frame)} bytes"))
            session.close_after_flush(1009, "FRAME_TOO_LONG")
            return
        try:
            envelope = codec.decode(frame)
        except codec.ProtocolError as problem:
            self._on_bad_frame(session, frame, str(problem), received_at)
            return
        self._record(
            session, envelope.payload_type, envelope.client_msg_id, envelope.message, received_at
        )
        if envelope.payload_type == codec.HEARTBEAT_PAYLOAD_TYPE:
            return
        if self._faults.take_lost_request(envelope.payload_type):
            return  # lost on the way in (recorded for tests): never acted on, never answered
        if not self._admit(session, envelope.payload_type, envelope.client_msg_id, received_at):
            return
        maintenance_end = self._maintenance_end()
        if maintenance_end is not None and not session.app_authenticated:
            error = oa_error("SERVER_IS_UNDER_MAINTENANCE", "Server is under maintenance")
            error.maintenanceEndTimestamp = maintenance_end
            session.send(error, envelope.client_msg_id)
            session.close_after_flush(1000, "SERVER_IS_UNDER_MAINTENANCE")
            return
        exchange = self._handlers.handle(session, envelope.message)
        self._deliver(exchange, envelope.payload_type, envelope.client_msg_id)

    def _on_bad_frame(
        self, session: Session, frame: bytes, reason: str, received_at: float
    ) -> None:
        envelope = common_pb2.ProtoMessage()
        try:
            envelope.ParseFromString(frame)
            parsed = envelope.IsInitialized()
        except DecodeError:
            parsed = False
        client_msg_id = (
            envelope.clientMsgId if parsed and envelope.HasField("clientMsgId") else None
        )
        if not parsed:
            session.send(common_error("INVALID_REQUEST", reason))
            return
        cls = codec.PAYLOAD_CLASSES.get(envelope.payloadType)
        message: Message = envelope
        if cls is not None:
            message = cls()
            with contextlib.suppress(DecodeError):
                message.ParseFromString(envelope.payload)
        self._record(session, envelope.payloadType, client_msg_id, message, received_at)
        if not self._admit(session, envelope.payloadType, client_msg_id, received_at):
            return
        code = "UNSUPPORTED_MESSAGE" if cls is None else "INVALID_REQUEST"
        session.send(common_error(code, reason), client_msg_id)

    def _record(
        self,
        session: Session,
        payload_type: int,
        client_msg_id: str | None,
        message: Message,
        received_at: float,
    ) -> None:
        self.record.append(
            RecordedRequest(
                conn_id=session.conn_id,
                at=received_at,
                payload_type=payload_type,
                name=type(message).__name__,
                client_msg_id=client_msg_id,
                message=message,
            )
        )

    def _admit(
        self, session: Session, payload_type: int, client_msg_id: str | None, now: float
    ) -> bool:
        """Rate limits: at most ``max_rps`` admitted requests in any rolling second of
        receipt times, of which at most ``max_historical_rps`` historical ones
        (docs/protocol.md §8)."""
        historical = payload_type in HISTORICAL_PAYLOAD_TYPES
        windows = [(session.admitted, self._config.max_rps)]
        if historical:
            windows.append((session.admitted_historical, self._config.max_historical_rps))
        for window, limit in windows:
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                self.rate_limit_rejections += 1
                error = oa_error("REQUEST_FREQUENCY_EXCEEDED", "Too many requests per second")
                error.retryAfter = 1
                session.send(error, client_msg_id)
                return False
        for window, _ in windows:
            window.append(now)
        return True

    def _maintenance_end(self) -> int | None:
        """When the maintenance under way ends (None: none under way)."""
        until = self.maintenance_until
        if until is not None and self._clock() * 1000 >= until:
            self.maintenance_until = until = None
        return until

    def _deliver(self, exchange: Exchange, payload_type: int, client_msg_id: str | None) -> None:
        requester = exchange.requester
        per_session: dict[int, tuple[Session, list[Message]]] = {}
        for session, message in exchange.out:
            per_session.setdefault(session.conn_id, (session, []))[1].append(message)
        own = per_session.pop(requester.conn_id, (requester, []))[1]
        for session, messages in per_session.values():
            session.send_frames([codec.encode(message) for message in messages])
        frames = [
            codec.encode(message, client_msg_id if index == 0 else None)
            for index, message in enumerate(own)
        ]
        if self._faults.take_swallow(payload_type):
            frames = []
        close = exchange.close
        if close is None and self._faults.take_close_after(payload_type):
            close = (1001, "going away")  # a close frame right after the reply

        def flush() -> None:
            requester.send_frames(frames)
            if close is not None:
                requester.close_after_flush(*close)

        delay = self._faults.delay_for(payload_type)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, flush)
        else:
            flush()
