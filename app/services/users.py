"""Registering users: idempotent, so a repeated ``/start`` never creates a second user."""

from __future__ import annotations

from functools import partial

from sqlalchemy.orm import InstrumentedAttribute

from app.models import User
from app.services.errors import ServiceError
from app.services.limits import clean_text, column_length, require_telegram_user_id
from app.services.novel import ensure_novel_state
from app.services.referrals import ensure_referral_link
from app.services.savepoint import insert_once
from app.story import Story
from app.unit_of_work import AppUnitOfWork

__all__ = ["register_user"]


async def register_user(
    uow: AppUnitOfWork,
    telegram_id: int,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    *,
    story: Story | None = None,
) -> tuple[User, bool]:
    """Return ``(user, created)``: the user with this Telegram id, created if new.

    A known user's profile fields are updated to the given values (and a user marked
    unreachable is reachable again: they wrote to the bot). Either way the user
    ends up with a referral link and a novel state (at ``story.start``; without a story
    the state is placed at the start the first time a story service sees it).
    Two concurrent registrations of one id create one user: the loser of the race reads
    the winner's row.

    The profile fields are stored without NUL and cut to their columns; an id outside
    ``1..2**63-1`` raises :class:`~app.services.errors.InvalidInput` before any statement.
    """
    require_telegram_user_id(telegram_id)
    username = _fit(username, User.username)
    first_name = _fit(first_name, User.first_name)
    last_name = _fit(last_name, User.last_name)
    language_code = _fit(language_code, User.language_code)
    user = await uow.users.get_by_telegram_id(telegram_id)
    created = False
    if user is None:
        candidate = User(
            telegram_id=telegram_id,
            username=username,
            first_name=first_name,
            last_name=last_name,
            language_code=language_code,
        )
        if await insert_once(uow.session, partial(uow.users.add, candidate)):
            user, created = candidate, True
        else:
            user = await uow.users.get_by_telegram_id(telegram_id)
            if user is None:  # pragma: no cover - the constraint that refused us was not ours
                raise ServiceError(f"User {telegram_id} could not be registered; try again.")
    else:
        _update_profile(user, username, first_name, last_name, language_code)

    await ensure_referral_link(uow, user, new_user=created)
    await ensure_novel_state(uow, user, story, new_user=created)
    return user, created


def _fit(value: str | None, column: InstrumentedAttribute[str | None]) -> str | None:
    return None if value is None else clean_text(value, column_length(column))


def _update_profile(
    user: User,
    username: str | None,
    first_name: str | None,
    last_name: str | None,
    language_code: str | None,
) -> None:
    # Assign only what changed, so a repeated /start issues no UPDATE.
    for name, value in (
        ("username", username),
        ("first_name", first_name),
        ("last_name", last_name),
        ("language_code", language_code),
    ):
        if getattr(user, name) != value:
            setattr(user, name, value)
    # Writing to the bot means the user no longer blocks it (an unblock whose my_chat_member
    # update was missed, or a 403 that has since passed).
    if user.unreachable_since is not None:
        user.unreachable_since = None
