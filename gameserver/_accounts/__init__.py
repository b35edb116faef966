"""Accounts: users, password hashing and tokens."""
