"""STATE per vantage (Zeek's "base" scripts): packets in, finished records out. Facts only, no judgement."""
