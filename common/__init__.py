"""The bottom layer: typed errors, settings and the value types every other package shares.

It imports nothing else of the project, so any package may import it.
"""
