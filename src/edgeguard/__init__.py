"""edgeguard."""

from .keys import TrustStore, load_identity
from .policy import VersionStore
from .recipients.pkcs11 import Pkcs11Identity
from .recipients.scrypt import PassphraseIdentity
from .runtime import InferenceSession, open_sealed
from .secure_memory import harden_process
