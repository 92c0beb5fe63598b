"""COMMANDS: argv -> job -> report -> exit code. No analysis logic here."""
