"""The one error type of onboarding: its message is one sentence naming the cause and the fix."""

from __future__ import annotations


class OnboardingError(Exception):
    """Something the user must act on; ``str()`` is printed as is (never holds a secret)."""
