"""Business rules of the app. No HTTP or Telegram types. The rules that write take the
:class:`~app.unit_of_work.AppUnitOfWork` and never commit (the caller's unit of work does);
the read views (:mod:`app.services.stats`) take any ``AsyncSession``, e.g. a read snapshot's."""

from app.services.broadcast import (
    BROADCAST_MAX_LENGTH,
    TextOutbox,
    broadcast,
    check_broadcast_text,
)
from app.services.errors import (
    ChoiceNotAvailable,
    InvalidInput,
    PremiumRequired,
    ServiceError,
    UserNotFound,
)
from app.services.novel import (
    advance_story,
    ensure_novel_state,
    get_novel_state,
    log_message,
    show_scene,
)
from app.services.payments import (
    PREMIUM_CURRENCY,
    PREMIUM_DESCRIPTION,
    PREMIUM_PAYLOAD,
    PREMIUM_PRICE_XTR,
    PREMIUM_TITLE,
    record_successful_payment,
    unlocks_premium,
    validate_pre_checkout,
)
from app.services.reachability import mark_reachable, mark_unreachable
from app.services.referrals import (
    ReferralResult,
    attach_referrer,
    ensure_referral_link,
    new_referral_code,
    referral_link_code,
)
from app.services.stats import PaymentInfo, Stats, UserProfile, stats, user_payments, user_profile
from app.services.users import register_user

__all__ = [
    "BROADCAST_MAX_LENGTH",
    "PREMIUM_CURRENCY",
    "PREMIUM_DESCRIPTION",
    "PREMIUM_PAYLOAD",
    "PREMIUM_PRICE_XTR",
    "PREMIUM_TITLE",
    "ChoiceNotAvailable",
    "InvalidInput",
    "PaymentInfo",
    "PremiumRequired",
    "ReferralResult",
    "ServiceError",
    "Stats",
    "TextOutbox",
    "UserNotFound",
    "UserProfile",
    "advance_story",
    "attach_referrer",
    "broadcast",
    "check_broadcast_text",
    "ensure_novel_state",
    "ensure_referral_link",
    "get_novel_state",
    "log_message",
    "mark_reachable",
    "mark_unreachable",
    "new_referral_code",
    "record_successful_payment",
    "referral_link_code",
    "register_user",
    "show_scene",
    "stats",
    "unlocks_premium",
    "user_payments",
    "user_profile",
    "validate_pre_checkout",
]
