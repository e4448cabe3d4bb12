"""Test harness: real parts started privately for each test (Mosquitto, controller)."""
