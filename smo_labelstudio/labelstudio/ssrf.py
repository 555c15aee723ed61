"""Label Studio's SSRF protection with one address let through: the ML backend's.

Label Studio 1.23.2 refuses, at every outgoing request a member can aim (URL imports, webhooks and their
delivery, ML backends and their calls, export media downloads, S3 and Redis storages), any address in its
banned subnets (`core/utils/io.py validate_ip`). The list has no ports and no allow-list, so the only way to
let Label Studio reach a backend on a private or loopback address while keeping everything else banned is
to replace the default list (`USE_DEFAULT_BANNED_SUBNETS=false`) by the same list with the backend's one
address carved out (`USER_ADDITIONAL_BANNED_SUBNETS`). `SSRF_PROTECTION_ENABLED=false` instead would open
every internal address (cloud metadata, the Prefect API, Redis) to every member's URL imports.
"""

from __future__ import annotations

import ipaddress

# Label Studio 1.23.2's `default_banned_subnets` (core/utils/io.py), in its order; the test suite compares
# this copy with the installed Label Studio's.
DEFAULT_BANNED_SUBNETS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "233.252.0.0/24",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "::ffff:0:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:0000::/32",
    "2001:20::/28",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)


def banned_subnets_except(address: str) -> list[str]:
    """Label Studio's default banned subnets with `address` (an IP literal) carved out: every other address
    they cover stays banned. The value for `USER_ADDITIONAL_BANNED_SUBNETS` (joined with commas, no spaces)."""
    allowed = ipaddress.ip_address(address)
    banned: list[str] = []
    for text in DEFAULT_BANNED_SUBNETS:
        subnet = ipaddress.ip_network(text)
        if allowed in subnet:
            rest = subnet.address_exclude(ipaddress.ip_network(allowed))  # type: ignore[arg-type]
            banned += [str(n) for n in sorted(rest)]
        else:
            banned.append(str(subnet))
    return banned


def label_studio_settings(backend_address: str) -> dict[str, str]:
    """The Label Studio environment that keeps SSRF protection (and the ML-backend check) on and lets
    through only `backend_address`."""
    return {
        "LABEL_STUDIO_SSRF_PROTECTION_ENABLED": "true",
        "LABEL_STUDIO_ML_BLOCK_LOCAL_IP": "true",
        "LABEL_STUDIO_USE_DEFAULT_BANNED_SUBNETS": "false",
        "LABEL_STUDIO_USER_ADDITIONAL_BANNED_SUBNETS": ",".join(banned_subnets_except(backend_address)),
    }
