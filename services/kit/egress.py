"""Outbound HTTP to hosts that users chose: public addresses only (SSRF guard).

A push endpoint's URL is typed by a user but fetched from inside the cluster,
where loopback reaches sidecar admin ports and link-local reaches cloud
metadata (issue 21, T3-M2). One guard decides for every such request:

* `check_url` (syntax, no I/O): https only; no credentials; no bare or
  internal names (`redis`, `x.svc.cluster.local`, `metadata.google.internal`);
  IP literals must be public, also when written as IPv4-mapped/6to4/NAT64
  IPv6 or in the shorthand forms (`2130706433`, `0177.0.0.1`).
* `check` (registration): the above, then the name is resolved and every
  address must be public.
* `connector` (delivery): an aiohttp connector whose resolver resolves, checks
  and hands aiohttp exactly the addresses it checked, so the connection goes
  to a checked address and a second DNS answer (rebinding) cannot swap it.
  Callers keep `allow_redirects=False`: a redirect is never followed.

`allow_loopback` (env `PUSH_ALLOW_LOOPBACK_TARGETS=1`) lets local development
and tests deliver to a server on this machine (http or https); it is off by
default and never set in deploy/.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

#: The dev/test switch (see the module docstring).
ALLOW_LOOPBACK_ENV = "PUSH_ALLOW_LOOPBACK_TARGETS"
MAX_URL_CHARS = 2048
#: A registration or delivery waits this long for DNS, then treats the name as unresolved.
RESOLVE_TIMEOUT_SECONDS = 5.0

#: Suffixes of names that only mean something inside a network.
INTERNAL_SUFFIXES = (
    ".local",
    ".localhost",
    ".localdomain",
    ".internal",
    ".intranet",
    ".lan",
    ".home",
    ".corp",
    ".home.arpa",
    ".svc",
    ".cluster.local",
    ".in-addr.arpa",
    ".ip6.arpa",
)
#: 100.64.0.0/10 (carrier-grade NAT) is neither private nor global to `ipaddress`.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: NAT64 (RFC 6052) embeds an IPv4 address in its last 32 bits.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: A host that a lenient parser could read as an IPv4 address (`2130706433`,
#: `0x7f.1`, `0177.0.0.1`): only digits, dots and hex; never a real name.
NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*$")

#: Resolves (host, port) to IP address strings.
Resolve = Callable[[str, int], Awaitable[list[str]]]


class EgressRefused(Exception):
    """The target is not one we send to; the message says why (for the user)."""

    def __init__(self, reason: str, *, not_public: bool = True) -> None:
        super().__init__(reason)
        #: False for plain syntax problems (not https, credentials, malformed).
        self.not_public = not_public


class TargetRefused(OSError):
    """Raised inside aiohttp's connect when the resolved address is not public.

    aiohttp wraps resolver errors in `ClientConnectorError` (`os_error` is
    this); callers use `refused_by_guard` to tell it from a network error.
    """


def refused_by_guard(exc: BaseException) -> TargetRefused | None:
    """The guard's refusal behind an aiohttp connection error, if that is what it was."""
    os_error = getattr(exc, "os_error", None)
    return os_error if isinstance(os_error, TargetRefused) else None


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (TCP), in its order, deduplicated."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class EgressGuard:
    """Which outbound targets are allowed, and the resolver that pins them."""

    allow_loopback: bool = False
    resolve: Resolve = field(default=system_resolve, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EgressGuard:
        """`PUSH_ALLOW_LOOPBACK_TARGETS=1` allows loopback (dev and tests only)."""
        source = os.environ if env is None else env
        return cls(allow_loopback=source.get(ALLOW_LOOPBACK_ENV, "") in ("1", "true", "yes"))

    # ----- addresses ---------------------------------------------------------

    def address_refusal(self, value: str) -> str | None:
        """Why this IP address is refused, or None when it is public (or allowed loopback)."""
        try:
            address = ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            return f"{value!r} is not an IP address"
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                return self.address_refusal(str(embedded))
        if address.is_loopback:
            return None if self.allow_loopback else "points at a loopback address"
        if address.is_link_local:
            return "points at a link-local address (e.g. cloud metadata)"
        if address.is_multicast:
            return "points at a multicast address"
        if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
            return "points at a carrier-grade NAT address"
        if address.is_private or address.is_reserved or address.is_unspecified:
            return "points at a private or reserved address"
        if not address.is_global:
            return "points at a non-public address"
        return None

    def _literal(self, host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return None

    def _is_loopback_host(self, host: str) -> bool:
        address = self._literal(host)
        if address is not None:
            return address.is_loopback
        return host == "localhost" or host.endswith(".localhost")

    # ----- URLs --------------------------------------------------------------

    def check_url(self, url: str) -> SplitResult:
        """Syntax and IP-literal checks, no I/O; raises `EgressRefused`."""
        if len(url) > MAX_URL_CHARS:
            raise EgressRefused(f"at most {MAX_URL_CHARS} characters", not_public=False)
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
            raise EgressRefused("must not contain spaces or control characters", not_public=False)
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower().rstrip(".")
            _ = parts.port  # raises ValueError for a malformed port
        except ValueError as exc:
            raise EgressRefused("not a valid URL", not_public=False) from exc
        if parts.scheme not in ("https", "http") or not host:
            raise EgressRefused("must be an https URL with a host", not_public=False)
        if parts.username is not None or parts.password is not None:
            raise EgressRefused("must not carry credentials", not_public=False)
        if self.allow_loopback and self._is_loopback_host(host):
            return parts  # dev/test: a local server, http or https
        # Where it points first: `http://127.0.0.1` is refused as internal, not as http.
        literal = self._literal(host)
        if literal is not None:
            refusal = self.address_refusal(str(literal))
            if refusal:
                raise EgressRefused(refusal)
        elif NUMERIC_HOST.match(host):
            raise EgressRefused("must not be a numeric host other than a plain IP address")
        elif "." not in host or host.endswith(INTERNAL_SUFFIXES) or host == "localhost":
            raise EgressRefused("must be a public host name, not an internal one")
        if parts.scheme != "https":
            raise EgressRefused("must be https", not_public=False)
        return parts

    async def resolve_public(self, host: str, port: int) -> list[str]:
        """The host's addresses, all checked; raises `EgressRefused` if any is not public.

        All, not some: a name answering with one public and one internal
        address must not get a connection attempt to the internal one.
        """
        literal = self._literal(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = await asyncio.wait_for(
                    self.resolve(host, port), RESOLVE_TIMEOUT_SECONDS
                )
            except OSError as exc:  # TimeoutError included
                raise EgressRefused(
                    f"the host name does not resolve ({exc or type(exc).__name__})"
                ) from exc
        if not addresses:
            raise EgressRefused("the host name does not resolve")
        for address in addresses:
            refusal = self.address_refusal(address)
            if refusal:
                raise EgressRefused(f"resolves to {address}, which {refusal}")
        return addresses

    async def check(self, url: str) -> list[str]:
        """Registration: `check_url`, then every resolved address must be public."""
        parts = self.check_url(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return await self.resolve_public(host, port)

    def connector(self, **kwargs: object) -> aiohttp.TCPConnector:
        """A connector that only connects to addresses this guard checked (no DNS cache)."""
        return aiohttp.TCPConnector(
            resolver=PinningResolver(self),
            use_dns_cache=False,
            **kwargs,  # type: ignore[arg-type]
        )


class GuardedClient:
    """One lazily created HTTP session whose every connection goes through `guard`.

    Lazy because an aiohttp session binds to the running loop; recreated if closed.
    """

    def __init__(self, guard: EgressGuard, *, timeout_seconds: float, user_agent: str) -> None:
        self._guard = guard
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=self._guard.connector(),
                timeout=self._timeout,
                headers={"User-Agent": self._user_agent},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class PinningResolver(AbstractResolver):
    """aiohttp's resolver for guarded sessions: resolve, refuse non-public, return what was checked.

    aiohttp connects to exactly the addresses a resolver returns (IP-literal
    hosts skip it; `check_url` covers those before the request).
    """

    def __init__(self, guard: EgressGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._guard.resolve_public(host.lower().rstrip("."), port)
        except EgressRefused as exc:
            # An OSError is what aiohttp turns into ClientConnectorError; a name
            # that does not resolve (now) is a network error, worth a retry.
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from exc
            raise TargetRefused(f"push target refused: {exc}") from exc
        results: list[ResolveResult] = []
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        return results

    async def close(self) -> None:
        return None
