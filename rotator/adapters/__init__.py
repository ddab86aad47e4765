"""Adapters: the only modules that talk to Adobe, AWS and the database."""
