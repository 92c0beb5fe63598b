"""Shared vocabulary: errors, exit codes, evidence references, topology. Imports nothing from dsrdiag."""
