"""HOST CONFIGURATION: a back-end's own DSR settings -> HostConfig snapshot -> findings.

Linux is read live (netlink via pyroute2, /proc); Windows from saved netsh / PowerShell /
ipconfig output (or live on Windows). Checks are pure: snapshot and VIP in, findings out.
"""
