"""dsrdiag: prove that a DSR load-balanced SMTP service works, and find out exactly why it does not.

The package is one data flow: capture (read frames) -> decode (header fields) -> track
(connections, SMTP, ARP/NDP) -> findings (judge records) -> report (terminal, JSON).
See docs/architecture.md.
"""

__version__ = "0.1.0"
