"""USE CASES: the only code that chains layers; each job returns a Report."""
