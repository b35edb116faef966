from twisted.application.service import ServiceMaker

gameserver = ServiceMaker(
    "gameserver",
    "gameserver.tap",
    "Serve multiplayer games over HTTP and WebSocket",
    "gameserver",
)
