"""Load on perfkit's agent service: ``locust -f examples/locust/locustfile.py``."""

from perfkit.locust import AgentServiceUser

__all__ = ["AgentServiceUser"]  # Locust runs the user classes it finds in this module
