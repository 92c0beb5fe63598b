"""TEST LAB: a real DSR site in network namespaces (Linux, root), healthy and broken.

Imports only dsrdiag.core, never the analyser: the lab is the independent ground truth the
analyser is tested against. Each scenario verifies its own fault with tcpdump filters, not with
dsrdiag.
"""
