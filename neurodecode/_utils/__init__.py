"""Helpers every stage may use: environment, threads, input checks. Imports numpy (and torch for threads) only."""
