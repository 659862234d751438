from cmamd.protocol.proto import model_pb2 as _model_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProtoOAApplicationAuthReq(_message.Message):
    __slots__ = ("payloadType", "clientId", "clientSecret")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENTID_FIELD_NUMBER: _ClassVar[int]
    CLIENTSECRET_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    clientId: str
    clientSecret: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., clientId: _Optional[str] = ..., clientSecret: _Optional[str] = ...) -> None: ...

class ProtoOAApplicationAuthRes(_message.Message):
    __slots__ = ("payloadType",)
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ...) -> None: ...

class ProtoOAAccountAuthReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "accessToken")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    ACCESSTOKEN_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    accessToken: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., accessToken: _Optional[str] = ...) -> None: ...

class ProtoOAAccountAuthRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOAVersionReq(_message.Message):
    __slots__ = ("payloadType",)
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ...) -> None: ...

class ProtoOAVersionRes(_message.Message):
    __slots__ = ("payloadType", "version")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    version: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., version: _Optional[str] = ...) -> None: ...

class ProtoOANewOrderReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbolId", "orderType", "tradeSide", "volume", "limitPrice", "stopPrice", "timeInForce", "expirationTimestamp", "stopLoss", "takeProfit", "comment", "baseSlippagePrice", "slippageInPoints", "label", "positionId", "clientOrderId", "relativeStopLoss", "relativeTakeProfit", "guaranteedStopLoss", "trailingStopLoss", "stopTriggerMethod")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    ORDERTYPE_FIELD_NUMBER: _ClassVar[int]
    TRADESIDE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    LIMITPRICE_FIELD_NUMBER: _ClassVar[int]
    STOPPRICE_FIELD_NUMBER: _ClassVar[int]
    TIMEINFORCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STOPLOSS_FIELD_NUMBER: _ClassVar[int]
    TAKEPROFIT_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    BASESLIPPAGEPRICE_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGEINPOINTS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    CLIENTORDERID_FIELD_NUMBER: _ClassVar[int]
    RELATIVESTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    RELATIVETAKEPROFIT_FIELD_NUMBER: _ClassVar[int]
    GUARANTEEDSTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    TRAILINGSTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    STOPTRIGGERMETHOD_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbolId: int
    orderType: _model_pb2.ProtoOAOrderType
    tradeSide: _model_pb2.ProtoOATradeSide
    volume: int
    limitPrice: float
    stopPrice: float
    timeInForce: _model_pb2.ProtoOATimeInForce
    expirationTimestamp: int
    stopLoss: float
    takeProfit: float
    comment: str
    baseSlippagePrice: float
    slippageInPoints: int
    label: str
    positionId: int
    clientOrderId: str
    relativeStopLoss: int
    relativeTakeProfit: int
    guaranteedStopLoss: bool
    trailingStopLoss: bool
    stopTriggerMethod: _model_pb2.ProtoOAOrderTriggerMethod
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[int] = ..., orderType: _Optional[_Union[_model_pb2.ProtoOAOrderType, str]] = ..., tradeSide: _Optional[_Union[_model_pb2.ProtoOATradeSide, str]] = ..., volume: _Optional[int] = ..., limitPrice: _Optional[float] = ..., stopPrice: _Optional[float] = ..., timeInForce: _Optional[_Union[_model_pb2.ProtoOATimeInForce, str]] = ..., expirationTimestamp: _Optional[int] = ..., stopLoss: _Optional[float] = ..., takeProfit: _Optional[float] = ..., comment: _Optional[str] = ..., baseSlippagePrice: _Optional[float] = ..., slippageInPoints: _Optional[int] = ..., label: _Optional[str] = ..., positionId: _Optional[int] = ..., clientOrderId: _Optional[str] = ..., relativeStopLoss: _Optional[int] = ..., relativeTakeProfit: _Optional[int] = ..., guaranteedStopLoss: _Optional[bool] = ..., trailingStopLoss: _Optional[bool] = ..., stopTriggerMethod: _Optional[_Union[_model_pb2.ProtoOAOrderTriggerMethod, str]] = ...) -> None: ...

class ProtoOATrailingSLChangedEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "positionId", "orderId", "stopPrice", "utcLastUpdateTimestamp")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    ORDERID_FIELD_NUMBER: _ClassVar[int]
    STOPPRICE_FIELD_NUMBER: _ClassVar[int]
    UTCLASTUPDATETIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    positionId: int
    orderId: int
    stopPrice: float
    utcLastUpdateTimestamp: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., positionId: _Optional[int] = ..., orderId: _Optional[int] = ..., stopPrice: _Optional[float] = ..., utcLastUpdateTimestamp: _Optional[int] = ...) -> None: ...

class ProtoOACancelOrderReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "orderId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    ORDERID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    orderId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., orderId: _Optional[int] = ...) -> None: ...

class ProtoOAAmendOrderReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "orderId", "volume", "limitPrice", "stopPrice", "expirationTimestamp", "stopLoss", "takeProfit", "slippageInPoints", "relativeStopLoss", "relativeTakeProfit", "guaranteedStopLoss", "trailingStopLoss", "stopTriggerMethod")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    ORDERID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    LIMITPRICE_FIELD_NUMBER: _ClassVar[int]
    STOPPRICE_FIELD_NUMBER: _ClassVar[int]
    EXPIRATIONTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STOPLOSS_FIELD_NUMBER: _ClassVar[int]
    TAKEPROFIT_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGEINPOINTS_FIELD_NUMBER: _ClassVar[int]
    RELATIVESTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    RELATIVETAKEPROFIT_FIELD_NUMBER: _ClassVar[int]
    GUARANTEEDSTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    TRAILINGSTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    STOPTRIGGERMETHOD_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    orderId: int
    volume: int
    limitPrice: float
    stopPrice: float
    expirationTimestamp: int
    stopLoss: float
    takeProfit: float
    slippageInPoints: int
    relativeStopLoss: int
    relativeTakeProfit: int
    guaranteedStopLoss: bool
    trailingStopLoss: bool
    stopTriggerMethod: _model_pb2.ProtoOAOrderTriggerMethod
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., orderId: _Optional[int] = ..., volume: _Optional[int] = ..., limitPrice: _Optional[float] = ..., stopPrice: _Optional[float] = ..., expirationTimestamp: _Optional[int] = ..., stopLoss: _Optional[float] = ..., takeProfit: _Optional[float] = ..., slippageInPoints: _Optional[int] = ..., relativeStopLoss: _Optional[int] = ..., relativeTakeProfit: _Optional[int] = ..., guaranteedStopLoss: _Optional[bool] = ..., trailingStopLoss: _Optional[bool] = ..., stopTriggerMethod: _Optional[_Union[_model_pb2.ProtoOAOrderTriggerMethod, str]] = ...) -> None: ...

class ProtoOAAmendPositionSLTPReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "positionId", "stopLoss", "takeProfit", "guaranteedStopLoss", "trailingStopLoss", "stopLossTriggerMethod")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    STOPLOSS_FIELD_NUMBER: _ClassVar[int]
    TAKEPROFIT_FIELD_NUMBER: _ClassVar[int]
    GUARANTEEDSTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    TRAILINGSTOPLOSS_FIELD_NUMBER: _ClassVar[int]
    STOPLOSSTRIGGERMETHOD_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    positionId: int
    stopLoss: float
    takeProfit: float
    guaranteedStopLoss: bool
    trailingStopLoss: bool
    stopLossTriggerMethod: _model_pb2.ProtoOAOrderTriggerMethod
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., positionId: _Optional[int] = ..., stopLoss: _Optional[float] = ..., takeProfit: _Optional[float] = ..., guaranteedStopLoss: _Optional[bool] = ..., trailingStopLoss: _Optional[bool] = ..., stopLossTriggerMethod: _Optional[_Union[_model_pb2.ProtoOAOrderTriggerMethod, str]] = ...) -> None: ...

class ProtoOAClosePositionReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "positionId", "volume")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    positionId: int
    volume: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., positionId: _Optional[int] = ..., volume: _Optional[int] = ...) -> None: ...

class ProtoOAAssetListReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOAAssetListRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "asset")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    asset: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAAsset]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., asset: _Optional[_Iterable[_Union[_model_pb2.ProtoOAAsset, _Mapping]]] = ...) -> None: ...

class ProtoOASymbolsListReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "includeArchivedSymbols")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    INCLUDEARCHIVEDSYMBOLS_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    includeArchivedSymbols: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., includeArchivedSymbols: _Optional[bool] = ...) -> None: ...

class ProtoOASymbolsListRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbol", "archivedSymbol")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ARCHIVEDSYMBOL_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbol: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOALightSymbol]
    archivedSymbol: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAArchivedSymbol]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbol: _Optional[_Iterable[_Union[_model_pb2.ProtoOALightSymbol, _Mapping]]] = ..., archivedSymbol: _Optional[_Iterable[_Union[_model_pb2.ProtoOAArchivedSymbol, _Mapping]]] = ...) -> None: ...

class ProtoOASymbolByIdReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbolId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbolId: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[_Iterable[int]] = ...) -> None: ...

class ProtoOASymbolByIdRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbol", "archivedSymbol")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ARCHIVEDSYMBOL_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbol: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOASymbol]
    archivedSymbol: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAArchivedSymbol]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbol: _Optional[_Iterable[_Union[_model_pb2.ProtoOASymbol, _Mapping]]] = ..., archivedSymbol: _Optional[_Iterable[_Union[_model_pb2.ProtoOAArchivedSymbol, _Mapping]]] = ...) -> None: ...

class ProtoOASymbolChangedEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbolId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbolId: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[_Iterable[int]] = ...) -> None: ...

class ProtoOATraderReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOATraderRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "trader")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    TRADER_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    trader: _model_pb2.ProtoOATrader
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., trader: _Optional[_Union[_model_pb2.ProtoOATrader, _Mapping]] = ...) -> None: ...

class ProtoOATraderUpdatedEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "trader")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    TRADER_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    trader: _model_pb2.ProtoOATrader
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., trader: _Optional[_Union[_model_pb2.ProtoOATrader, _Mapping]] = ...) -> None: ...

class ProtoOAReconcileReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "returnProtectionOrders")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    RETURNPROTECTIONORDERS_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    returnProtectionOrders: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., returnProtectionOrders: _Optional[bool] = ...) -> None: ...

class ProtoOAReconcileRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "position", "order")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    position: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAPosition]
    order: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAOrder]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., position: _Optional[_Iterable[_Union[_model_pb2.ProtoOAPosition, _Mapping]]] = ..., order: _Optional[_Iterable[_Union[_model_pb2.ProtoOAOrder, _Mapping]]] = ...) -> None: ...

class ProtoOAExecutionEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "executionType", "position", "order", "deal", "bonusDepositWithdraw", "depositWithdraw", "errorCode", "isServerEvent")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONTYPE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    BONUSDEPOSITWITHDRAW_FIELD_NUMBER: _ClassVar[int]
    DEPOSITWITHDRAW_FIELD_NUMBER: _ClassVar[int]
    ERRORCODE_FIELD_NUMBER: _ClassVar[int]
    ISSERVEREVENT_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    executionType: _model_pb2.ProtoOAExecutionType
    position: _model_pb2.ProtoOAPosition
    order: _model_pb2.ProtoOAOrder
    deal: _model_pb2.ProtoOADeal
    bonusDepositWithdraw: _model_pb2.ProtoOABonusDepositWithdraw
    depositWithdraw: _model_pb2.ProtoOADepositWithdraw
    errorCode: str
    isServerEvent: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., executionType: _Optional[_Union[_model_pb2.ProtoOAExecutionType, str]] = ..., position: _Optional[_Union[_model_pb2.ProtoOAPosition, _Mapping]] = ..., order: _Optional[_Union[_model_pb2.ProtoOAOrder, _Mapping]] = ..., deal: _Optional[_Union[_model_pb2.ProtoOADeal, _Mapping]] = ..., bonusDepositWithdraw: _Optional[_Union[_model_pb2.ProtoOABonusDepositWithdraw, _Mapping]] = ..., depositWithdraw: _Optional[_Union[_model_pb2.ProtoOADepositWithdraw, _Mapping]] = ..., errorCode: _Optional[str] = ..., isServerEvent: _Optional[bool] = ...) -> None: ...

class ProtoOASubscribeSpotsReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbolId", "subscribeToSpotTimestamp")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBETOSPOTTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbolId: _containers.RepeatedScalarFieldContainer[int]
    subscribeToSpotTimestamp: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[_Iterable[int]] = ..., subscribeToSpotTimestamp: _Optional[bool] = ...) -> None: ...

class ProtoOASubscribeSpotsRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOAUnsubscribeSpotsReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbolId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbolId: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[_Iterable[int]] = ...) -> None: ...

class ProtoOAUnsubscribeSpotsRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOASpotEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "symbolId", "bid", "ask", "trendbar", "sessionClose", "timestamp")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLID_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    TRENDBAR_FIELD_NUMBER: _ClassVar[int]
    SESSIONCLOSE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    symbolId: int
    bid: int
    ask: int
    trendbar: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOATrendbar]
    sessionClose: int
    timestamp: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., symbolId: _Optional[int] = ..., bid: _Optional[int] = ..., ask: _Optional[int] = ..., trendbar: _Optional[_Iterable[_Union[_model_pb2.ProtoOATrendbar, _Mapping]]] = ..., sessionClose: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class ProtoOAOrderErrorEvent(_message.Message):
    __slots__ = ("payloadType", "errorCode", "orderId", "ctidTraderAccountId", "positionId", "description")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    ERRORCODE_FIELD_NUMBER: _ClassVar[int]
    ORDERID_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    errorCode: str
    orderId: int
    ctidTraderAccountId: int
    positionId: int
    description: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., errorCode: _Optional[str] = ..., orderId: _Optional[int] = ..., ctidTraderAccountId: _Optional[int] = ..., positionId: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class ProtoOADealListReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "fromTimestamp", "toTimestamp", "maxRows")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    FROMTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TOTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MAXROWS_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    fromTimestamp: int
    toTimestamp: int
    maxRows: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., fromTimestamp: _Optional[int] = ..., toTimestamp: _Optional[int] = ..., maxRows: _Optional[int] = ...) -> None: ...

class ProtoOADealListRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "deal", "hasMore")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    HASMORE_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    deal: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOADeal]
    hasMore: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., deal: _Optional[_Iterable[_Union[_model_pb2.ProtoOADeal, _Mapping]]] = ..., hasMore: _Optional[bool] = ...) -> None: ...

class ProtoOAMarginChangedEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "positionId", "usedMargin", "moneyDigits")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    USEDMARGIN_FIELD_NUMBER: _ClassVar[int]
    MONEYDIGITS_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    positionId: int
    usedMargin: int
    moneyDigits: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., positionId: _Optional[int] = ..., usedMargin: _Optional[int] = ..., moneyDigits: _Optional[int] = ...) -> None: ...

class ProtoOAErrorRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "errorCode", "description", "maintenanceEndTimestamp", "retryAfter")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    ERRORCODE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCEENDTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RETRYAFTER_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    errorCode: str
    description: str
    maintenanceEndTimestamp: int
    retryAfter: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., errorCode: _Optional[str] = ..., description: _Optional[str] = ..., maintenanceEndTimestamp: _Optional[int] = ..., retryAfter: _Optional[int] = ...) -> None: ...

class ProtoOAAccountsTokenInvalidatedEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountIds", "reason")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTIDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountIds: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountIds: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class ProtoOAClientDisconnectEvent(_message.Message):
    __slots__ = ("payloadType", "reason")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    reason: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ProtoOAGetAccountListByAccessTokenReq(_message.Message):
    __slots__ = ("payloadType", "accessToken")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    ACCESSTOKEN_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    accessToken: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., accessToken: _Optional[str] = ...) -> None: ...

class ProtoOAGetAccountListByAccessTokenRes(_message.Message):
    __slots__ = ("payloadType", "accessToken", "permissionScope", "ctidTraderAccount")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    ACCESSTOKEN_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONSCOPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNT_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    accessToken: str
    permissionScope: _model_pb2.ProtoOAClientPermissionScope
    ctidTraderAccount: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOACtidTraderAccount]
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., accessToken: _Optional[str] = ..., permissionScope: _Optional[_Union[_model_pb2.ProtoOAClientPermissionScope, str]] = ..., ctidTraderAccount: _Optional[_Iterable[_Union[_model_pb2.ProtoOACtidTraderAccount, _Mapping]]] = ...) -> None: ...

class ProtoOAAccountLogoutReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOAAccountLogoutRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOAAccountDisconnectEvent(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOARefreshTokenReq(_message.Message):
    __slots__ = ("payloadType", "refreshToken")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    REFRESHTOKEN_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    refreshToken: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., refreshToken: _Optional[str] = ...) -> None: ...

class ProtoOARefreshTokenRes(_message.Message):
    __slots__ = ("payloadType", "accessToken", "tokenType", "expiresIn", "refreshToken")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    ACCESSTOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKENTYPE_FIELD_NUMBER: _ClassVar[int]
    EXPIRESIN_FIELD_NUMBER: _ClassVar[int]
    REFRESHTOKEN_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    accessToken: str
    tokenType: str
    expiresIn: int
    refreshToken: str
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., accessToken: _Optional[str] = ..., tokenType: _Optional[str] = ..., expiresIn: _Optional[int] = ..., refreshToken: _Optional[str] = ...) -> None: ...

class ProtoOAOrderListReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "fromTimestamp", "toTimestamp")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    FROMTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TOTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    fromTimestamp: int
    toTimestamp: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., fromTimestamp: _Optional[int] = ..., toTimestamp: _Optional[int] = ...) -> None: ...

class ProtoOAOrderListRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "order", "hasMore")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    HASMORE_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    order: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAOrder]
    hasMore: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., order: _Optional[_Iterable[_Union[_model_pb2.ProtoOAOrder, _Mapping]]] = ..., hasMore: _Optional[bool] = ...) -> None: ...

class ProtoOADealListByPositionIdReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "positionId", "fromTimestamp", "toTimestamp")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONID_FIELD_NUMBER: _ClassVar[int]
    FROMTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TOTIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    positionId: int
    fromTimestamp: int
    toTimestamp: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., positionId: _Optional[int] = ..., fromTimestamp: _Optional[int] = ..., toTimestamp: _Optional[int] = ...) -> None: ...

class ProtoOADealListByPositionIdRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "deal", "hasMore")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    HASMORE_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    deal: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOADeal]
    hasMore: bool
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., deal: _Optional[_Iterable[_Union[_model_pb2.ProtoOADeal, _Mapping]]] = ..., hasMore: _Optional[bool] = ...) -> None: ...

class ProtoOAGetPositionUnrealizedPnLReq(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ...) -> None: ...

class ProtoOAGetPositionUnrealizedPnLRes(_message.Message):
    __slots__ = ("payloadType", "ctidTraderAccountId", "positionUnrealizedPnL", "moneyDigits")
    PAYLOADTYPE_FIELD_NUMBER: _ClassVar[int]
    CTIDTRADERACCOUNTID_FIELD_NUMBER: _ClassVar[int]
    POSITIONUNREALIZEDPNL_FIELD_NUMBER: _ClassVar[int]
    MONEYDIGITS_FIELD_NUMBER: _ClassVar[int]
    payloadType: _model_pb2.ProtoOAPayloadType
    ctidTraderAccountId: int
    positionUnrealizedPnL: _containers.RepeatedCompositeFieldContainer[_model_pb2.ProtoOAPositionUnrealizedPnL]
    moneyDigits: int
    def __init__(self, payloadType: _Optional[_Union[_model_pb2.ProtoOAPayloadType, str]] = ..., ctidTraderAccountId: _Optional[int] = ..., positionUnrealizedPnL: _Optional[_Iterable[_Union[_model_pb2.ProtoOAPositionUnrealizedPnL, _Mapping]]] = ..., moneyDigits: _Optional[int] = ...) -> None: ...
