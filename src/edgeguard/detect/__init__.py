"""On-device extraction-query detection: profile, guard, policy and the events they produce."""

from .events import ATLAS_TECHNIQUES, SIGNALS, Action, AlertEvent, Decision, Reason
from .guard import MAX_CLIENT_ID_BYTES, Guard
from .policy import Policy
from .profile import Profile

__all__ = ["ATLAS_TECHNIQUES", "MAX_CLIENT_ID_BYTES", "SIGNALS", "Action", "AlertEvent", "Decision", "Guard", "Policy", "Profile", "Reason"]
