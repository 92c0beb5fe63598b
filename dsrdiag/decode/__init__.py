"""PURE decoding: bytes -> the few header fields dsrdiag uses. One small module per protocol (dpkt's shape).

No scapy here: building a scapy object per packet is ~185x slower than struct (docs/performance.md).
"""
