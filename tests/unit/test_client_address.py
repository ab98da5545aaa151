"""The client address the attempt limits count: the peer, or X-Forwarded-For only via trusted proxies."""

from __future__ import annotations

from cfd_server.auth.client_address import UNKNOWN, ClientAddresses


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards():
    addresses = ClientAddresses()
    assert addresses.limit_key("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"
    assert addresses.limit_key("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"


def test_a_trusted_proxy_names_the_client():
    addresses = ClientAddresses(["10.0.0.0/8"])
    assert addresses.limit_key("10.1.2.3", ["203.0.113.9"]) == "203.0.113.9"
    assert addresses.limit_key("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"  # not a trusted peer


def test_entries_left_of_the_first_untrusted_hop_are_ignored():
    """A client writes what it likes into X-Forwarded-For; only what trusted proxies appended counts."""
    addresses = ClientAddresses(["10.0.0.0/8"])
    assert addresses.limit_key("10.0.0.1", ["1.2.3.4, 203.0.113.9, 10.0.0.2"]) == "203.0.113.9"
    assert addresses.limit_key("10.0.0.1", ["1.2.3.4", "203.0.113.9"]) == "203.0.113.9"  # several header lines
    assert addresses.limit_key("10.0.0.1", ["10.0.0.3, 10.0.0.2"]) == "10.0.0.3"  # all trusted: the farthest


def test_an_unreadable_forwarded_entry_stops_at_the_last_known_hop():
    addresses = ClientAddresses(["10.0.0.0/8"])
    assert addresses.limit_key("10.0.0.1", ["203.0.113.9, garbage"]) == "10.0.0.1"


def test_ipv6_clients_count_per_64_network_and_mapped_ipv4_as_ipv4():
    addresses = ClientAddresses()
    assert addresses.limit_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert addresses.limit_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert addresses.limit_key("::ffff:198.51.100.7") == "198.51.100.7"


def test_no_peer_is_one_unknown_client():
    assert ClientAddresses().limit_key(None, ["203.0.113.9"]) == UNKNOWN
