"""PRESENTATION: Report in, text out. Everything taken from packets is escaped or kept as data here."""
