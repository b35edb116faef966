"""The client's address, as the per-address limits count it: no I/O.

A connection's peer is the client, unless the peer is one of the
operator's proxies (``--trusted-proxies``): then the proxy's header says
who its client was. Each proxy on the way appends the address it got the
request from, so the list is read from the right: the right-most entry
that is not a trusted proxy is the client. Whatever lies to its left was
written by the client itself and is not believed, and neither is any
header from a peer that is not trusted.

Only one header is read, the one the proxies set (``X-Forwarded-For`` by
default, or RFC 7239's ``Forwarded``): a proxy that sets one passes the
other through as the client wrote it, so reading both would let a client
choose its own address.

An IPv6 client counts by its /64 network, since one host is usually given
a whole /64 and could otherwise take a new address for every attempt.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

X_FORWARDED_FOR = "x-forwarded-for"
FORWARDED = "forwarded"
HEADERS = (X_FORWARDED_FOR, FORWARDED)
#: Entries of a forwarding header read at most, from the right.
MAX_HOPS = 32


#: What ``--trusted-proxies`` calls a proxy connecting over a UNIX socket.
UNIX = "unix"
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Addresses and CIDRs (``10.0.0.0/8``, ``::1``); ``ValueError`` if one is not."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"not an address or network (CIDR): {entry.strip()!r}"
            ) from None
        if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
            # Peers are read as IPv4 once mapped: so are the proxies.
            network = ipaddress.IPv4Network(
                (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
            )
        networks.append(network)
    return tuple(networks)


def parse_ip(text: str) -> IPAddress | None:
    """An address from a peer or a header entry: ``1.2.3.4``, ``1.2.3.4:80``,
    ``[::1]:80``, ``::1``, quoted or not; ``None`` if it is none."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 client behind a translation counts as that IPv4 address,
        # not by a /64 it shares with every other (NAT64) or has for
        # itself alone (6to4 gives each IPv4 address a /48).
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address.sixtofour:
            return address.sixtofour
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


#: Longest text read as an address (a bracketed IPv6 one with a port
#: and quotes is under 60): longer is no address, and is not remembered.
MAX_ADDRESS = 64
#: Characters of a forwarding header read, from its end: ``MAX_HOPS``
#: addresses, and more, fit.
MAX_HEADER = 4096
#: Addresses and keys remembered: the same peers and hops come again and
#: again (a NAT, a proxy, a client reconnecting), and ``ipaddress`` takes
#: microseconds to parse one.
CACHE = 4096


@functools.lru_cache(maxsize=CACHE)
def _parsed(text: str) -> IPAddress | None:
    return parse_ip(text)


def _ip(text: str) -> IPAddress | None:
    return None if len(text) > MAX_ADDRESS else _parsed(text)


@functools.lru_cache(maxsize=CACHE)
def key_of(address: IPAddress) -> str:
    """The string the limits count by: the address, or an IPv6 one's /64."""
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((int(address) >> 64 << 64, 64))
        return str(network)
    return str(address)


def forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order
    (an element with none gives ``""``).

    Split on every comma and semicolon, quotes or not: no address holds
    either, and a quote a client left open must not swallow the elements
    the proxies appended after it.
    """
    found = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                found.append(raw.strip().strip('"'))
                break
        else:
            found.append("")
    return found


class ClientAddresses:
    """Who the client is, given the peer and the request's headers."""

    __slots__ = ("_header", "_trusted", "_unix")

    def __init__(self, trusted: Iterable[str], header: str = X_FORWARDED_FOR) -> None:
        """``trusted``: the proxies' addresses or networks, and ``unix`` for
        one on a UNIX socket; ``header``: the one they set
        (``x-forwarded-for`` or ``forwarded``)."""
        header = header.lower()
        if header not in HEADERS:
            raise ValueError(f"the proxy header is one of {', '.join(HEADERS)}")
        entries = [entry.strip() for entry in trusted]
        self._unix = UNIX in (entry.lower() for entry in entries)
        self._trusted = parse_networks(e for e in entries if e.lower() != UNIX)
        self._header = header

    @property
    def header(self) -> str:
        """The forwarding header read from trusted proxies (lower case)."""
        return self._header

    @property
    def any_trusted(self) -> bool:
        return bool(self._trusted) or self._unix

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def client(self, peer: str, header: str | None) -> str:
        """The limits' key for a request from ``peer`` (its host) with this
        value of the forwarding header (every occurrence, joined by commas)."""
        address = _ip(peer)
        if address is None:
            # Not IP: a UNIX socket (``peer`` is ``unix``), one client unless
            # its proxy is trusted.
            if header is None or not self._unix:
                return peer[:MAX_ADDRESS]
        elif header is None or not self._trusted or not self.trusts(address):
            return key_of(address)
        header = header[-MAX_HEADER:]
        forwarded = self._header == FORWARDED
        hops = forwarded_for(header) if forwarded else header.split(",")
        client = address
        for hop in reversed(hops[-MAX_HOPS:]):
            found = _ip(hop.strip())
            if found is None:
                # "unknown", an obfuscated name, garbage: the client is
                # not known better than the proxy that wrote it.
                break
            client = found
            if not self.trusts(found):
                break
        return peer[:MAX_ADDRESS] if client is None else key_of(client)

    def of_headers(self, peer: str, headers: Mapping[str, str]) -> str:
        """``client`` with the headers as Autobahn and ``handshake.read`` keep
        them: lower-case names, repeats joined by commas."""
        return self.client(peer, headers.get(self._header))
