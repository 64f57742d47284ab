"""The app's tables, all named ``app__<table>`` through :class:`AppModel`.

The app also sends through db_manager's outbox, so its schema (``create_tables``, the
migrations) holds ``db_manager__telegram_outbox`` too: imported here, with the models.
"""

import db_manager.telegram.outbox  # noqa: F401  (db_manager__telegram_outbox on Base.metadata)
from app.models.base import AppModel, UTCDateTime, utcnow
from app.models.feedback import Feedback
from app.models.novel_message import MessageDirection, NovelMessage
from app.models.novel_state import NovelState
from app.models.payment import Payment, PaymentStatus
from app.models.referral_link import ReferralLink
from app.models.user import User

__all__ = [
    "AppModel",
    "Feedback",
    "MessageDirection",
    "NovelMessage",
    "NovelState",
    "Payment",
    "PaymentStatus",
    "ReferralLink",
    "UTCDateTime",
    "User",
    "utcnow",
]
