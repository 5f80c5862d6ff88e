"""edgeguard."""

from .detect import Action, AlertEvent, Decision, Guard, Policy, Profile, Reason  # noqa: E402
