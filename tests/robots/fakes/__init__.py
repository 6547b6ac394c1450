"""Test doubles for hardware nobody has here (the Interbotix arms)."""
