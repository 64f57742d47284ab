"""The exceptions the services raise when a rule refuses a request.

::

    ServiceError            root; the message is a sentence fit to show the user
    ├── UserNotFound        no user with that Telegram id (send /start first)
    ├── ChoiceNotAvailable  a choice that is unknown or not offered by the current scene
    ├── PremiumRequired     the choice leads into a premium scene and premium is not bought
    └── InvalidInput        a value the database cannot hold (out-of-range id, NUL, ...)

Nothing is changed in the database when one of them is raised.
"""

from __future__ import annotations

__all__ = [
    "ChoiceNotAvailable",
    "InvalidInput",
    "PremiumRequired",
    "ServiceError",
    "UserNotFound",
]


class ServiceError(Exception):
    """Root of the app's business-rule errors."""


class UserNotFound(ServiceError):
    def __init__(self, telegram_id: int) -> None:
        super().__init__(f"User {telegram_id} is not registered; send /start first.")
        self.telegram_id = telegram_id


class ChoiceNotAvailable(ServiceError):
    """The choice is unknown or belongs to another scene (a stale or foreign button)."""

    def __init__(self, choice_id: str, current_scene: str) -> None:
        super().__init__(
            "This choice is not available any more; use the buttons of the latest scene."
        )
        self.choice_id = choice_id
        self.current_scene = current_scene


class PremiumRequired(ServiceError):
    """The choice leads into a premium scene and the user has not bought premium."""

    def __init__(self, scene: str) -> None:
        super().__init__("This part of the story is premium; send /buy to unlock it.")
        self.scene = scene


class InvalidInput(ServiceError):
    """A value the database cannot hold (an id beyond 64 bits, an over-long identifier, NUL,
    a non-positive amount); refused before any statement."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"The {field} is not valid ({reason}).")
        self.field = field
        self.reason = reason
