"""The client for internal services: against real gateways, killed and refusing."""
