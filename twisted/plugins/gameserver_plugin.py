from twisted.application.service import ServiceMaker

gameserver = ServiceMaker(
    "gameserver",
    "gameserver._tap",
    "Serve multiplayer games over HTTP and WebSocket",
    "gameserver",
)
