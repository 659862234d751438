"""Onboarding: from an Open API application to running accounts (`cmamd auth`, `cmamd accounts`,
`cmamd check-config --connect`)."""
