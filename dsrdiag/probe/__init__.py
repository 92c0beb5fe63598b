"""ACTIVE PROBES: bounded stimuli towards the VIP (and the ARP/NDP broadcast), never anywhere else.

Their replies are captured by capture/live.py and judged by the same analyser as any capture.
scapy is used here, and only here in the package, to craft ARP/NDP requests and raw SYNs.
"""
