"""JUDGEMENT (Zeek's "policy" scripts): finished records + topology -> findings. No I/O, no printing."""
