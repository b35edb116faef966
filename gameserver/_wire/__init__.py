"""The wire: messages, limits, the session core and its Autobahn adapter."""
