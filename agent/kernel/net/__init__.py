"""Networking through netlink: the transport (nlsock), per-namespace socket
pools and clients (client, netns), rtnetlink (rtnl), traffic-control payloads
(tcwire) and nftables (nftables). Never the tc, ip or nft binaries."""
