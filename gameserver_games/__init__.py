"""The games that ship with gameserver, each found as a Twisted plugin."""
