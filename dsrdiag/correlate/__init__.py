"""SEVERAL VANTAGES: the same connection followed through every capture of a post-mortem.

Pure: per-vantage records in, paths, clock offsets and path findings out. Matching uses what DSR
leaves unchanged between vantages (addresses, ports, sequence and acknowledgement numbers, flags,
payload length); MACs and TTLs are what changes, and say which hop was taken.
"""
