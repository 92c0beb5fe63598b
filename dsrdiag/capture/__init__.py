"""INPUT: capture files -> raw frames with Wireshark frame numbers. Knows link types, nothing above."""
